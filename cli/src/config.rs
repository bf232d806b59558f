//! Node configuration files (TOML) and the secret files they name.
//!
//! A config file is hostile input: it is size-capped, must be UTF-8, every
//! table rejects unknown keys, and every error names the file and, where the
//! TOML parser knows it, the line and column. Relative paths inside it
//! (`identity`, `psk_file`) are resolved against the config file's folder.
//!
//! Secret files: the identity seed (32 raw bytes) must not be accessible by
//! group or others (mode 0600 or tighter), or it is refused; a config or PSK
//! file readable or writable by group/others is accepted with a warning. See
//! `docs/node.example.toml` for every key.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use net_crypto::{BackendChoice, Identity, PublicIdentity};
use net_engine::{DriverChoice, MeshNodeConfig};
use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Largest config file accepted.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Length of an identity seed file.
pub const SEED_LEN: usize = 32;

/// Default `spin_us` (the engine's default spin before parking).
pub const DEFAULT_SPIN_US: u64 = 50;

/// Engine defaults restated for settings that are applied in pairs (the
/// engine takes idle timeout with keepalive, handshake retry with attempts).
const DEFAULT_IDLE_MS: u64 = 30_000;
const DEFAULT_KEEPALIVE_MS: u64 = 1_000;
const DEFAULT_HANDSHAKE_RETRY_MS: u64 = 250;
const DEFAULT_HANDSHAKE_ATTEMPTS: u64 = 8;
const DEFAULT_REANNOUNCE_S: u64 = 150;
const DEFAULT_MIN_ANNOUNCE_S: u64 = 10;

/// Why a config, seed or PSK file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Opening, reading or writing failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a regular file (a directory, a device, a FIFO).
    #[error("{}: not a regular file", .path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error("{}: larger than {max} bytes", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// A syntax or value error at a known position.
    #[error("{}:{line}:{column}: {message}", .path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value error the parser could not place.
    #[error("{}: {message}", .path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An identity seed file accessible by group or others.
    #[error(
        "{}: identity seed has mode {mode:04o}, looser than 0600; refusing to use it \
         (run `chmod 600 {}` if no one else could have read it, else make a new identity)",
        .path.display(), .path.display()
    )]
    SeedMode {
        /// The seed file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A seed file that is not exactly [`SEED_LEN`] bytes.
    #[error("{}: an identity seed is exactly 32 bytes; this file has {len}", .path.display())]
    SeedLength {
        /// The seed file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// A PSK file whose content is not 64 hex characters.
    #[error(
        "{}: a PSK file holds 64 hex characters (32 bytes); {problem}",
        .path.display()
    )]
    PskFile {
        /// The PSK file.
        path: PathBuf,
        /// What is wrong (never the content).
        problem: String,
    },
    /// Neither `psk` nor `psk_file`.
    #[error("{}: no mesh PSK: set `psk` (64 hex characters) or `psk_file`", .path.display())]
    MissingPsk {
        /// The config file.
        path: PathBuf,
    },
    /// Both `psk` and `psk_file`.
    #[error("{}: set either `psk` or `psk_file`, not both", .path.display())]
    PskConflict {
        /// The config file.
        path: PathBuf,
    },
    /// `create_secret_file` on an existing path.
    #[error("{}: already exists; refusing to overwrite it", .path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl ConfigError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A mesh PSK read from a config: 32 bytes, zeroized on drop, never printed.
#[derive(Clone)]
pub struct Psk(Zeroizing<[u8; 32]>);

impl Psk {
    /// The key bytes.
    pub fn bytes(&self) -> [u8; 32] {
        *self.0
    }

    /// Parses 64 hex characters; `Err` describes the problem without echoing it.
    pub fn from_hex(text: &str) -> Result<Psk, String> {
        let t = text.trim();
        if t.len() != 64 {
            return Err(format!(
                "expected 64 hex characters (32 bytes), found {} characters",
                t.chars().count()
            ));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(t, key.as_mut())
            .map_err(|_| "expected 64 hex characters (32 bytes), found a non-hex character")?;
        Ok(Psk(key))
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Psk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        Psk::from_hex(&s).map_err(|e| D::Error::custom(format!("psk: {e}")))
    }
}

/// A peer this node may call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// The peer's public identity (64 hex, as `net id --public` prints).
    #[serde(deserialize_with = "public_identity")]
    pub identity: PublicIdentity,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// `[session]`: handshake and session timers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Close a session idle this long (ms).
    #[serde(default, deserialize_with = "ranged::<_, 100, 86_400_000>")]
    pub idle_timeout_ms: Option<u64>,
    /// Heartbeat (ms): keepalive interval on an otherwise idle session; the
    /// failure detector holds a peer silent for 3 of them Suspect, 6 Down.
    #[serde(default, deserialize_with = "ranged::<_, 10, 14_400_000>")]
    pub keepalive_ms: Option<u64>,
    /// First handshake retransmission timeout (ms), doubling per attempt.
    #[serde(default, deserialize_with = "ranged::<_, 1, 60_000>")]
    pub handshake_retry_ms: Option<u64>,
    /// Handshake attempts before the peer is reported unreachable.
    #[serde(default, deserialize_with = "ranged::<_, 1, 32>")]
    pub handshake_attempts: Option<u64>,
}

/// `[capabilities]`: the capability announcement cadence.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilitiesSection {
    /// Re-announce period (s); 0 turns the periodic re-announce off.
    #[serde(default, deserialize_with = "ranged::<_, 0, 1_800>")]
    pub reannounce_s: Option<u64>,
    /// Least time between two announcements sent (s).
    #[serde(default, deserialize_with = "ranged::<_, 0, 1_800>")]
    pub min_announce_s: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Default per-service limit of unanswered calls (beyond: `Backpressure`).
    #[serde(default, deserialize_with = "ranged::<_, 1, 1_000_000>")]
    pub max_in_flight: Option<u64>,
    /// Sessions per core (default 4 096); when full, a session of a peer not
    /// in `[[peers]]` is evicted.
    #[serde(default, deserialize_with = "ranged::<_, 1, 1_048_576>")]
    pub max_sessions: Option<u64>,
    /// Sessions one peer identity may open to a core (default 64).
    #[serde(default, deserialize_with = "ranged::<_, 1, 65_536>")]
    pub max_sessions_per_peer: Option<u64>,
    /// Sessions per core only `[[peers]]` may use (default 1 024; capped at
    /// `max_sessions`).
    #[serde(default, deserialize_with = "ranged::<_, 0, 1_048_576>")]
    pub reserved_sessions: Option<u64>,
}

/// A config file as written: every key optional except `identity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path of the identity seed (32 bytes, mode 0600).
    pub identity: PathBuf,
    /// The mesh PSK inline, 64 hex characters.
    #[serde(default)]
    pub psk: Option<Psk>,
    /// A file holding the mesh PSK as 64 hex characters.
    #[serde(default)]
    pub psk_file: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:0, an ephemeral port).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Event-loop cores (default 1).
    #[serde(default, deserialize_with = "ranged::<_, 1, 64>")]
    pub cores: Option<u64>,
    /// CPUs to pin core i to (`cpus[i % len]`); default unpinned.
    #[serde(default)]
    pub cpus: Option<Vec<usize>>,
    /// UDP driver: auto, uring, mmsg, portable (default: `NET_DRIVER`, else auto).
    #[serde(default, deserialize_with = "parsed")]
    pub driver: Option<DriverChoice>,
    /// AEAD backend: auto, ring, rustcrypto (default: `NET_AEAD`, else auto).
    #[serde(default, deserialize_with = "parsed")]
    pub aead: Option<BackendChoice>,
    /// Spin before parking (µs, default 50).
    #[serde(default, deserialize_with = "ranged::<_, 0, 1_000_000>")]
    pub spin_us: Option<u64>,
    /// Yield the CPU after each idle pass while spinning (default true).
    #[serde(default)]
    pub spin_yield: Option<bool>,
    /// Log filter, `RUST_LOG` syntax (default `info`; `RUST_LOG` wins).
    #[serde(default, deserialize_with = "log_filter")]
    pub log: Option<String>,
    /// Roots whose token chains are accepted for `require_token` services.
    #[serde(default, deserialize_with = "public_identities")]
    pub token_roots: Vec<PublicIdentity>,
    /// Session timers.
    #[serde(default)]
    pub session: SessionSection,
    /// Capability announcement cadence.
    #[serde(default)]
    pub capabilities: CapabilitiesSection,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Peers this node may call.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
}

fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(D::Error::custom)
}

fn ranged<'de, D, const LO: u64, const HI: u64>(d: D) -> Result<Option<u64>, D::Error>
where
    D: Deserializer<'de>,
{
    let n = i64::deserialize(d)?;
    match u64::try_from(n) {
        Ok(n) if (LO..=HI).contains(&n) => Ok(Some(n)),
        _ => Err(D::Error::custom(format!(
            "{n} is out of range: expected {LO} to {HI}"
        ))),
    }
}

fn parse_public(s: &str) -> Result<PublicIdentity, String> {
    s.parse().map_err(|_| {
        "expected a public identity: 64 hex characters as `net id --public` prints \
         (a node id is a hash of it and cannot be used to connect)"
            .to_string()
    })
}

fn public_identity<'de, D: Deserializer<'de>>(d: D) -> Result<PublicIdentity, D::Error> {
    parse_public(&String::deserialize(d)?).map_err(D::Error::custom)
}

fn public_identities<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PublicIdentity>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_public(s).map_err(D::Error::custom))
        .collect()
}

fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    // tracing-subscriber 0.3 slices a directive at indices taken from its
    // trimmed copy, which panics when leading whitespace is followed by a
    // multi-byte character (found by the `config` fuzz target). Filters are
    // Rust paths, levels and field names: ASCII keeps every index valid.
    if !s.is_ascii() {
        return Err(D::Error::custom("log: only ASCII characters are allowed"));
    }
    tracing_subscriber::EnvFilter::try_new(&s)
        .map_err(|e| D::Error::custom(format!("log: {e}")))?;
    Ok(Some(s))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl FileConfig {
    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_string();
            match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    ConfigError::Syntax {
                        path: path.to_path_buf(),
                        line,
                        column,
                        message,
                    }
                }
                None => ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message,
                },
            }
        })
    }
}

/// A warning about a file's permissions: logged with `tracing::warn!` and
/// returned so a CLI can show it before logging is set up.
fn check_loose(path: &Path, mode: u32, what: &str, warnings: &mut Vec<String>) {
    let readable = mode & 0o044 != 0;
    let writable = mode & 0o022 != 0;
    if !readable && !writable {
        return;
    }
    let how = match (readable, writable) {
        (true, true) => "readable and writable",
        (true, false) => "readable",
        _ => "writable",
    };
    let w = format!(
        "{} has mode {:04o}: {how} by group/others; {what} (chmod 600 {})",
        path.display(),
        mode & 0o7777,
        path.display()
    );
    tracing::warn!("{w}");
    warnings.push(w);
}

/// Opens a regular file; returns it with its permission bits and length.
fn open_regular(path: &Path) -> Result<(File, u32, u64), ConfigError> {
    let f = File::open(path).map_err(|e| ConfigError::io(path, e))?;
    let meta = f.metadata().map_err(|e| ConfigError::io(path, e))?;
    if !meta.is_file() {
        return Err(ConfigError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    Ok((f, meta.mode() & 0o7777, meta.len()))
}

/// Reads at most `max` bytes; `Ok(None)` if the file holds more.
fn read_capped(f: File, path: &Path, max: u64) -> Result<Option<Zeroizing<Vec<u8>>>, ConfigError> {
    let mut buf = Zeroizing::new(Vec::new());
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ConfigError::io(path, e))?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

/// Reads an identity seed file (32 raw bytes), refusing one accessible by
/// group or others.
pub fn read_identity(path: &Path) -> Result<Identity, ConfigError> {
    let (f, mode, len) = open_regular(path)?;
    if mode & 0o077 != 0 {
        return Err(ConfigError::SeedMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let wrong_len = || ConfigError::SeedLength {
        path: path.to_path_buf(),
        len,
    };
    let buf = read_capped(f, path, SEED_LEN as u64)?.ok_or_else(wrong_len)?;
    let seed: &[u8; SEED_LEN] = buf.as_slice().try_into().map_err(|_| wrong_len())?;
    Ok(Identity::from_seed(seed))
}

/// Reads a PSK file (64 hex characters, surrounding whitespace ignored),
/// warning if it is accessible by group/others.
pub fn read_psk_file(path: &Path, warnings: &mut Vec<String>) -> Result<Psk, ConfigError> {
    let (f, mode, _) = open_regular(path)?;
    check_loose(path, mode, "it holds the mesh PSK", warnings);
    let bad = |problem: String| ConfigError::PskFile {
        path: path.to_path_buf(),
        problem,
    };
    let buf = read_capped(f, path, 4096)?.ok_or_else(|| bad("this file is larger".into()))?;
    let text = std::str::from_utf8(&buf).map_err(|_| bad("found non-text bytes".into()))?;
    Psk::from_hex(text).map_err(|e| bad(e.replace("expected 64 hex characters (32 bytes), ", "")))
}

/// Creates `path` with mode 0600 (`O_CREAT | O_EXCL`: never overwrites,
/// never follows a planted symlink) and writes `bytes` to it durably. A
/// half-written file is removed.
pub fn create_secret_file(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => ConfigError::Exists {
                path: path.to_path_buf(),
            },
            _ => ConfigError::io(path, e),
        })?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(ConfigError::io(path, e));
    }
    Ok(())
}

/// A loaded node configuration: the file's settings, the identity read from
/// its seed, the PSK, and any permission warnings.
#[derive(Debug)]
pub struct NodeConfig {
    /// The config file.
    pub path: PathBuf,
    /// Its settings as written.
    pub file: FileConfig,
    /// The identity seed's path, resolved against the config's folder.
    pub identity_path: PathBuf,
    /// The node's identity.
    pub identity: Identity,
    /// The mesh PSK.
    pub psk: Psk,
    /// Permission warnings (also logged with `tracing::warn!`).
    pub warnings: Vec<String>,
}

impl NodeConfig {
    /// Reads and checks `path`, then the files it names. Warns if the config
    /// is accessible by group/others (before parsing it); refuses a seed
    /// file looser than 0600.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let mut warnings = Vec::new();
        let (f, mode, _) = open_regular(path)?;
        check_loose(
            path,
            mode,
            "it names the identity seed and may hold the mesh PSK",
            &mut warnings,
        );
        let buf = read_capped(f, path, MAX_CONFIG_BYTES)?.ok_or(ConfigError::TooLarge {
            path: path.to_path_buf(),
            max: MAX_CONFIG_BYTES,
        })?;
        let text = std::str::from_utf8(&buf).map_err(|e| {
            let ok = std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = line_column(ok, ok.len());
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: "not UTF-8".into(),
            }
        })?;
        let file = FileConfig::parse(text, path)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let identity_path = dir.join(&file.identity);
        let identity = read_identity(&identity_path)?;
        let psk = match (&file.psk, &file.psk_file) {
            (Some(p), None) => p.clone(),
            (None, Some(f)) => read_psk_file(&dir.join(f), &mut warnings)?,
            (None, None) => return Err(ConfigError::MissingPsk { path: path.into() }),
            (Some(_), Some(_)) => return Err(ConfigError::PskConflict { path: path.into() }),
        };
        Ok(NodeConfig {
            path: path.to_path_buf(),
            file,
            identity_path,
            identity,
            psk,
            warnings,
        })
    }

    /// The engine configuration these settings describe.
    pub fn mesh_config(&self) -> MeshNodeConfig {
        let f = &self.file;
        let mut c = MeshNodeConfig::new(self.identity.clone(), self.psk.bytes());
        if let Some(a) = f.listen {
            c = c.with_listen(a);
        }
        if let Some(n) = f.cores {
            c = c.with_cores(n as usize);
        }
        if let Some(cpus) = &f.cpus {
            c = c.with_cpus(cpus.clone());
        }
        if let Some(d) = f.driver {
            c = c.with_driver(d);
        }
        if let Some(a) = f.aead {
            c = c.with_aead(a);
        }
        if let Some(us) = f.spin_us {
            c = c.with_spin(Duration::from_micros(us));
        }
        if let Some(y) = f.spin_yield {
            c = c.with_spin_yield(y);
        }
        let s = &f.session;
        if s.idle_timeout_ms.is_some() || s.keepalive_ms.is_some() {
            let idle = s.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_MS);
            let keep = s.keepalive_ms.unwrap_or(DEFAULT_KEEPALIVE_MS);
            c = c.with_timeouts(Duration::from_millis(idle), Duration::from_millis(keep));
        }
        if s.handshake_retry_ms.is_some() || s.handshake_attempts.is_some() {
            let retry = s.handshake_retry_ms.unwrap_or(DEFAULT_HANDSHAKE_RETRY_MS);
            let n = s.handshake_attempts.unwrap_or(DEFAULT_HANDSHAKE_ATTEMPTS);
            c = c.with_handshake(Duration::from_millis(retry), n as u32);
        }
        let caps = &f.capabilities;
        if caps.reannounce_s.is_some() || caps.min_announce_s.is_some() {
            let re = match caps.reannounce_s.unwrap_or(DEFAULT_REANNOUNCE_S) {
                0 => Duration::MAX,
                s => Duration::from_secs(s),
            };
            let min = caps.min_announce_s.unwrap_or(DEFAULT_MIN_ANNOUNCE_S);
            c = c.with_capability_intervals(re, Duration::from_secs(min));
        }
        if let Some(n) = f.limits.max_in_flight {
            c = c.with_max_in_flight(n as u32);
        }
        let l = &f.limits;
        if l.max_sessions.is_some()
            || l.max_sessions_per_peer.is_some()
            || l.reserved_sessions.is_some()
        {
            use net_proto::config as d;
            let or = |v: Option<u64>, default: usize| v.map_or(default, |n| n as usize);
            c = c.with_session_limits(
                or(l.max_sessions, d::DEFAULT_MAX_SESSIONS),
                or(l.max_sessions_per_peer, d::DEFAULT_MAX_SESSIONS_PER_PEER),
                or(l.reserved_sessions, d::DEFAULT_RESERVED_SESSIONS),
            );
        }
        if !f.token_roots.is_empty() {
            c = c.with_token_roots(f.token_roots.clone());
        }
        for p in &f.peers {
            c = c.with_peer(p.addr, p.identity);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const EXAMPLE: &str = include_str!("../../docs/node.example.toml");

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("t.toml"))
    }

    fn err_at(text: &str) -> (usize, usize, String) {
        match parse(text) {
            Err(ConfigError::Syntax {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn the_example_sets_every_key_and_its_peer_block_parses() {
        let f = parse(EXAMPLE).expect("example parses");
        assert!(f.psk_file.is_some() && f.listen.is_some() && f.cores.is_some());
        assert!(f.driver.is_some() && f.aead.is_some() && f.spin_us.is_some());
        assert!(f.spin_yield.is_some());
        assert!(f.log.is_some() && f.limits.max_in_flight.is_some());
        let l = &f.limits;
        assert!(l.max_sessions.is_some() && l.max_sessions_per_peer.is_some());
        assert!(l.reserved_sessions.is_some());
        let s = &f.session;
        assert!(s.idle_timeout_ms.is_some() && s.keepalive_ms.is_some());
        assert!(s.handshake_retry_ms.is_some() && s.handshake_attempts.is_some());
        assert!(f.capabilities.reannounce_s.is_some() && f.capabilities.min_announce_s.is_some());
        let with_peer = EXAMPLE
            .replace("# cpus = [0, 1]", "cpus = [0, 1]")
            .replace("# [[peers]]", "[[peers]]")
            .replace(
                "# identity = \"<64 hex characters>\"",
                &format!("identity = \"{}\"", Identity::from_seed(&[1; 32]).public()),
            )
            .replace("# addr = ", "addr = ");
        let f = parse(&with_peer).expect("example with its peer block parses");
        assert_eq!(f.peers.len(), 1);
        assert_eq!(f.cpus, Some(vec![0, 1]));
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_column() {
        let (line, col, msg) = err_at("identity = \"a\"\n\nlisten_addr = \"x\"\n");
        assert_eq!((line, col), (3, 1));
        assert!(msg.contains("unknown field `listen_addr`"), "{msg}");
        let (line, col, _) = err_at("identity = \"a\"\n[session]\n  idle_ms = 5\n");
        assert_eq!((line, col), (3, 3));
        let (line, col, msg) =
            err_at("identity = \"a\"\n[[peers]]\naddr = \"127.0.0.1:1\"\nport = 1\n");
        assert_eq!((line, col), (4, 1), "{msg}");
    }

    #[test]
    fn bad_values_are_placed_and_explained() {
        let (line, col, msg) = err_at("identity = \"a\"\npsk = \"abcd\"\n");
        assert_eq!((line, col), (2, 7));
        assert!(msg.contains("64 hex") && msg.contains("found 4"), "{msg}");
        let (_, _, msg) = err_at(&format!(
            "identity = \"a\"\npsk = \"{}\"\n",
            "zz".repeat(32)
        ));
        assert!(msg.contains("non-hex"), "{msg}");
        let (line, _, msg) = err_at("identity = \"a\"\ncores = 0\n");
        assert!(line == 2 && msg.contains("1 to 64"), "{msg}");
        let (_, _, msg) = err_at("identity = \"a\"\nspin_us = -1\n");
        assert!(msg.contains("out of range"), "{msg}");
        let (_, _, msg) = err_at("identity = \"a\"\ndriver = \"fast\"\n");
        assert!(msg.contains("unknown UDP driver"), "{msg}");
        let (_, _, msg) = err_at("identity = \"a\"\nlisten = \"localhost\"\n");
        assert!(msg.contains("socket address"), "{msg}");
        let (_, _, msg) = err_at("identity = \"a\"\nlog = \"info,[\"\n");
        assert!(msg.starts_with("log:"), "{msg}");
        // Made tracing-subscriber panic (fuzz/corpus/config/regress_log_non_ascii).
        let (line, _, msg) = err_at("identity = \"a\"\nlog = \"  1\u{fffd}=x\"\n");
        assert!(line == 2 && msg.contains("ASCII"), "{msg}");
        let bad_peer = format!(
            "identity = \"a\"\n[[peers]]\nidentity = \"{}\"\naddr = \"127.0.0.1:1\"\n",
            "00".repeat(31)
        );
        let (line, _, msg) = err_at(&bad_peer);
        assert!(line == 3 && msg.contains("node id"), "{msg}");
        let (line, col, _) = err_at("identity = \"a\"\nx = [\n");
        assert!(line >= 2 && col >= 1);
    }

    #[test]
    fn line_column_counts_characters_and_clamps() {
        let t = "ab\nµµx\n";
        assert_eq!(line_column(t, 0), (1, 1));
        assert_eq!(line_column(t, 3), (2, 1));
        assert_eq!(line_column(t, 7), (2, 3)); // after two 2-byte µ
        assert_eq!(line_column(t, 4), (2, 1)); // inside a µ: start of it
        assert_eq!(line_column(t, 999), (3, 1));
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("net-config-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
        fn write(&self, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, bytes).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            p
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_resolves_files_checks_modes_and_warns() {
        let d = Dir::new("load");
        d.write("n.seed", &[5; 32], 0o600);
        d.write(
            "mesh.psk",
            format!("{}\n", "ab".repeat(32)).as_bytes(),
            0o640,
        );
        let cfg = d.write(
            "n.toml",
            b"identity = \"n.seed\"\npsk_file = \"mesh.psk\"\n",
            0o600,
        );
        let c = NodeConfig::load(&cfg).expect("loads");
        assert_eq!(
            c.identity.node_id(),
            Identity::from_seed(&[5; 32]).node_id()
        );
        assert_eq!(c.psk.bytes(), [0xab; 32]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("mesh.psk has mode 0640: readable by group/others"));

        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o604)).expect("chmod");
        let c = NodeConfig::load(&cfg).expect("loads");
        assert!(
            c.warnings[0].contains("n.toml has mode 0604: readable"),
            "{:?}",
            c.warnings
        );

        d.write("loose.seed", &[5; 32], 0o644);
        let cfg = d.write(
            "l.toml",
            b"identity = \"loose.seed\"\npsk_file = \"mesh.psk\"\n",
            0o600,
        );
        assert!(matches!(
            NodeConfig::load(&cfg),
            Err(ConfigError::SeedMode { mode: 0o644, .. })
        ));

        d.write("short.seed", &[5; 31], 0o600);
        let cfg = d.write(
            "s.toml",
            b"identity = \"short.seed\"\npsk_file = \"mesh.psk\"\n",
            0o600,
        );
        assert!(matches!(
            NodeConfig::load(&cfg),
            Err(ConfigError::SeedLength { len: 31, .. })
        ));
        d.write("long.seed", &[5; 33], 0o600);
        assert!(matches!(
            read_identity(&d.0.join("long.seed")),
            Err(ConfigError::SeedLength { len: 33, .. })
        ));
    }

    #[test]
    fn psk_sources_are_exclusive_and_checked() {
        let d = Dir::new("psk");
        d.write("n.seed", &[5; 32], 0o600);
        let none = d.write("a.toml", b"identity = \"n.seed\"\n", 0o600);
        assert!(matches!(
            NodeConfig::load(&none),
            Err(ConfigError::MissingPsk { .. })
        ));
        let both = format!(
            "identity = \"n.seed\"\npsk = \"{}\"\npsk_file = \"p\"\n",
            "01".repeat(32)
        );
        let both = d.write("b.toml", both.as_bytes(), 0o600);
        assert!(matches!(
            NodeConfig::load(&both),
            Err(ConfigError::PskConflict { .. })
        ));
        d.write("short.psk", "ab".repeat(31).as_bytes(), 0o600);
        let short = d.write(
            "c.toml",
            b"identity = \"n.seed\"\npsk_file = \"short.psk\"\n",
            0o600,
        );
        let e = NodeConfig::load(&short).expect_err("short PSK file");
        assert!(e.to_string().contains("found 62 characters"), "{e}");
        assert!(
            !e.to_string().contains("abab"),
            "the PSK is never echoed: {e}"
        );
    }

    #[test]
    fn secret_files_are_created_0600_and_never_overwritten() {
        let d = Dir::new("create");
        let p = d.0.join("s");
        create_secret_file(&p, b"x").expect("created");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            create_secret_file(&p, b"y"),
            Err(ConfigError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&p).expect("read"), b"x");
        assert!(matches!(
            NodeConfig::load(&d.0),
            Err(ConfigError::NotAFile { .. })
        ));
    }
}
