//! Replays the committed `config` fuzz corpus (and any saved crash
//! artifacts) through the target body under `cargo test`, and checks the
//! seeds reach the paths they were written for.

use std::fs;
use std::path::{Path, PathBuf};

use net_cli::config::FileConfig;

#[path = "../../fuzz/replay.rs"]
mod replay;

fn fuzz_dir() -> PathBuf {
    replay::fuzz_dir(env!("CARGO_MANIFEST_DIR"), 1)
}

#[test]
fn config_corpus_replays_cleanly() {
    assert!(replay::files_in(&fuzz_dir().join("corpus/config")).len() >= 4);
    replay::replay_all(&fuzz_dir(), &[("config", net_cli::fuzzing::config)]);
}

#[test]
fn config_seeds_cover_success_and_each_failure() {
    let parse = |name: &str| {
        let text = fs::read(fuzz_dir().join("corpus/config").join(name)).unwrap();
        FileConfig::parse(&String::from_utf8_lossy(&text), Path::new(name))
    };
    assert!(parse("seed_example").is_ok());
    let minimal = parse("seed_minimal").unwrap();
    assert_eq!((minimal.cores, minimal.peers.len()), (Some(2), 1));
    let range = parse("seed_out_of_range").unwrap_err().to_string();
    assert!(range.contains("seed_out_of_range:2:"), "{range}");
    let broken = parse("seed_broken").unwrap_err().to_string();
    assert!(broken.contains("seed_broken:2:"), "{broken}");
}
