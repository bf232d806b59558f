//! The wire registries (`wire_registry!`): their values are pinned, their
//! conversions agree with their lists, and every frame type has a seed in
//! the fuzz corpus, so a new frame type cannot be added without one.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::fs;
use std::path::Path;

use net_proto::ids::CallKind;
use net_proto::wire::{frames, FrameType, PacketType, WireError};

/// The `frames` fuzz target's seed corpus: each file is the plaintext of
/// one data packet (see `fuzz/fuzz_targets/frames.rs`).
const FRAMES_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/frames");

/// The frame types one input contains: every frame decoded before the
/// first error, plus [`FrameType::Padding`] if a zero byte stands where a
/// type byte is expected (the decoder skips padding, never yields it).
fn types_in(input: &[u8]) -> BTreeSet<u8> {
    let mut out = BTreeSet::new();
    let mut it = frames(input);
    loop {
        if it.remaining().first() == Some(&0) {
            out.insert(FrameType::Padding as u8);
        }
        match it.next() {
            Some(Ok(f)) => out.insert(f.frame_type() as u8),
            Some(Err(_)) | None => break,
        };
    }
    out
}

/// The frame types (from [`FrameType::ALL`]) that no input contains.
fn missing_types<'a>(inputs: impl IntoIterator<Item = &'a [u8]>) -> Vec<FrameType> {
    let covered: BTreeSet<u8> = inputs.into_iter().flat_map(types_in).collect();
    FrameType::ALL
        .iter()
        .copied()
        .filter(|t| !covered.contains(&(*t as u8)))
        .collect()
}

fn corpus_files(dir: &Path) -> Vec<Vec<u8>> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    entries
        .map(|e| e.expect("read corpus entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".keep"))
        .map(|p| fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

#[test]
fn every_frame_type_has_a_fuzz_seed() {
    let files = corpus_files(Path::new(FRAMES_CORPUS));
    assert!(!files.is_empty(), "{FRAMES_CORPUS} holds no seeds");
    let missing = missing_types(files.iter().map(Vec::as_slice));
    assert!(
        missing.is_empty(),
        "no seed in fuzz/corpus/frames contains {missing:?}: add one to \
         frame_seeds() in tests/fuzz_corpus.rs and run it with --ignored"
    );
}

#[test]
fn seed_check_reports_the_types_an_input_lacks() {
    // PING then two bytes of padding: everything else is missing.
    let input: &[u8] = &[FrameType::Ping as u8, 0, 0];
    let missing = missing_types([input]);
    let expected: Vec<FrameType> = FrameType::ALL
        .iter()
        .copied()
        .filter(|t| !matches!(t, FrameType::Ping | FrameType::Padding))
        .collect();
    assert_eq!(missing, expected);
    assert_eq!(missing_types([]), FrameType::ALL.to_vec());
}

/// Every byte converts to the registry value with that byte, or to the
/// registry's typed error carrying it; `ALL`, `from_u8`, `name` and
/// `Display` agree.
fn check_registry<T>(all: &[T], from_u8: fn(u8) -> Option<T>, unknown: fn(u8) -> WireError)
where
    T: Copy + Eq + std::fmt::Debug + Display + TryFrom<u8, Error = WireError> + Into<u8>,
{
    for b in 0..=u8::MAX {
        match T::try_from(b) {
            Ok(t) => {
                assert_eq!(t.into(), b);
                assert!(all.contains(&t), "{t:?} missing from ALL");
                assert_eq!(from_u8(b), Some(t));
            }
            Err(e) => {
                assert_eq!(e, unknown(b));
                assert_eq!(from_u8(b), None);
            }
        }
    }
    let names: BTreeSet<String> = all.iter().map(T::to_string).collect();
    assert_eq!(names.len(), all.len(), "names are distinct");
}

#[test]
fn registries_are_pinned_and_consistent() {
    check_registry(
        PacketType::ALL,
        PacketType::from_u8,
        WireError::UnknownPacketType,
    );
    check_registry(FrameType::ALL, FrameType::from_u8, WireError::UnknownFrame);
    check_registry(CallKind::ALL, CallKind::from_u8, WireError::InvalidCallKind);

    // The wire values and names of docs/PROTOCOL.md §1.3, §2 and §3.
    assert_eq!(
        PacketType::ALL.iter().map(|&t| t as u8).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        FrameType::ALL.iter().map(|&t| t as u8).collect::<Vec<_>>(),
        (0x00..=0x0e).collect::<Vec<u8>>()
    );
    assert_eq!(
        CallKind::ALL.iter().map(|&t| t as u8).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        PacketType::HandshakeResponse.to_string(),
        "HandshakeResponse"
    );
    assert_eq!(FrameType::RpcRequest.to_string(), "RPC_REQUEST");
    assert_eq!(FrameType::Close.name(), "CLOSE");
    assert_eq!(CallKind::ServerStream.to_string(), "ServerStream");
}
