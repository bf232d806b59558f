//! Corpus replay shared by the `fuzz_corpus` tests of net-proto, net-trust
//! and the SDK (each includes this file with `#[path]`): every committed
//! corpus input and saved crash artifact of a target runs through its body
//! under `cargo test`, without cargo-fuzz or nightly.

use std::fs;
use std::path::{Path, PathBuf};

/// The `fuzz/` directory, from a crate's manifest dir `depth` levels below
/// the workspace root.
pub fn fuzz_dir(manifest_dir: &str, depth: usize) -> PathBuf {
    let mut p = PathBuf::from(manifest_dir);
    for _ in 0..depth {
        p.push("..");
    }
    p.join("fuzz")
}

/// Files directly inside `dir`, sorted (none if it does not exist).
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("read corpus entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".keep"))
        .collect();
    out.sort();
    out
}

/// Runs `body` over target `name`'s corpus (which must not be empty) and
/// crash artifacts; fails naming the first input that panics.
pub fn replay(fuzz: &Path, name: &str, body: fn(&[u8])) {
    let corpus = files_in(&fuzz.join("corpus").join(name));
    assert!(!corpus.is_empty(), "fuzz/corpus/{name} is empty or missing");
    let artifacts = files_in(&fuzz.join("artifacts").join(name));
    for path in corpus.iter().chain(&artifacts) {
        let data = fs::read(path).expect("read corpus file");
        let res = std::panic::catch_unwind(|| body(&data));
        assert!(res.is_ok(), "{name}: {} fails", path.display());
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// [`replay`] for every `(corpus name, body)` of `targets`.
pub fn replay_all(fuzz: &Path, targets: &[(&str, Target)]) {
    for &(name, body) in targets {
        replay(fuzz, name, body);
    }
}
