//! Replays the committed `config` fuzz corpus (and any saved crash
//! artifacts) through the target body under `cargo test`, and checks the
//! seeds reach the paths they were written for.

use std::fs;
use std::path::{Path, PathBuf};

use net::config::FileConfig;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn config_corpus_replays_cleanly() {
    let corpus = files_in(&fuzz_dir().join("corpus/config"));
    assert!(corpus.len() >= 4, "fuzz/corpus/config is missing seeds");
    for path in corpus
        .iter()
        .chain(&files_in(&fuzz_dir().join("artifacts/config")))
    {
        let data = fs::read(path).unwrap();
        let res = std::panic::catch_unwind(|| net::fuzzing::config(&data));
        assert!(res.is_ok(), "config: {} fails", path.display());
    }
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
