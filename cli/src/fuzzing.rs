//! Fuzz target bodies for what the SDK reads from disk (see `fuzz/`):
//! plain functions, so `cargo test` replays their corpus without
//! cargo-fuzz. Not part of the API.

use std::path::Path;

use net_crypto::Identity;

use crate::config::{ConfigError, FileConfig, NodeConfig, Psk};

/// Fuzz target `config`: arbitrary bytes as a node config file's text. It
/// parses or fails with a typed error pointing inside the text, and a
/// config that parses converts to an engine configuration without panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    match FileConfig::parse(&text, path) {
        Ok(file) => {
            let node = NodeConfig {
                path: path.into(),
                file,
                identity_path: "seed".into(),
                identity: Identity::from_seed(&[1; 32]),
                psk: Psk::from_hex(&"ab".repeat(32)).expect("valid hex"),
                warnings: Vec::new(),
            };
            let _ = node.mesh_config();
        }
        Err(ConfigError::Syntax {
            line,
            column,
            message,
            ..
        }) => {
            assert!(line >= 1 && column >= 1, "position {line}:{column}");
            assert!(line <= text.lines().count() + 1, "line {line} past the end");
            assert!(!message.is_empty());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}
