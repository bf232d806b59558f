//! Replays the committed trust-layer fuzz corpora (and any saved crash
//! artifacts) through the fuzz target bodies under `cargo test`.
//! `cargo test -p net-trust --test fuzz_corpus -- --ignored` rewrites the seeds.

use std::fs;
use std::path::PathBuf;

use net_crypto::Identity;
use net_trust::fuzzing::{self, NOW_MS};
use net_trust::{
    AnnouncementBody, Capability, ReservationBody, ReservationOp, SignedAnnouncement,
    SignedReservation, TokenChain,
};

const TARGETS: &[(&str, replay::Target)] = &[
    ("trust_announcement", fuzzing::announcement),
    ("trust_token", fuzzing::token),
    ("trust_reservation", fuzzing::reservation),
    ("trust_capability_fold", fuzzing::capability_fold),
];

#[path = "../../../fuzz/replay.rs"]
mod replay;

fn fuzz_dir() -> PathBuf {
    replay::fuzz_dir(env!("CARGO_MANIFEST_DIR"), 2)
}

#[test]
fn corpora_replay_cleanly() {
    replay::replay_all(&fuzz_dir(), TARGETS);
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let (a, c) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[3; 32]));
    let cap = Capability::for_nodes("nrpc:echo", vec![c.node_id()]);
    let body = AnnouncementBody::new(a.node_id(), 1, NOW_MS, 60_000, vec![cap.clone()]);
    let valid = SignedAnnouncement::sign(&a, &body).unwrap().encode();
    let forged = fuzzing::forge_envelope(
        &a,
        &AnnouncementBody::new(c.node_id(), 1, NOW_MS, 60_000, vec![cap]),
    );
    let res = ReservationBody::new(
        a.node_id(),
        1,
        NOW_MS,
        60_000,
        "lock",
        ReservationOp::Acquire,
    );
    let reservation = SignedReservation::sign(&a, &res).unwrap().encode();
    let token =
        TokenChain::root(&a, c.node_id(), vec!["nrpc:echo".into()], NOW_MS + 60_000).encode();
    vec![
        ("trust_announcement", "valid", valid),
        ("trust_announcement", "forged_node_id", forged),
        ("trust_reservation", "acquire", reservation),
        ("trust_token", "root_link", token),
        (
            "trust_capability_fold",
            "mixed",
            vec![0, 0, 1, 1, 0, 2, 2, 1, 1, 1, 3, 0, 2, 0, 4, 200],
        ),
    ]
}

#[test]
#[ignore = "writes the seed corpus"]
fn write_seed_corpus() {
    for (target, name, bytes) in seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
    }
}

#[test]
fn seeds_run_through_their_targets() {
    for &(name, body) in TARGETS {
        for (target, seed, bytes) in seeds() {
            if target == name {
                assert!(
                    std::panic::catch_unwind(|| body(&bytes)).is_ok(),
                    "{name}: seed {seed}"
                );
            }
        }
    }
}
