//! Node identities: a `NodeId` is a 32-byte X25519 public key (node proxy:
//! `NodeID := Curve25519PubKey`); an [`Identity`] is the static keypair a
//! node proves itself with, kept in a key file.
//!
//! The secret is zeroized on drop. Reading a key file is the only IO here;
//! the rest of the layer is pure.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use zeroize::Zeroizing;

/// A node's identity on the network: its X25519 static public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short form for logs: the first 8 hex characters.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a NodeId string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a NodeId is 64 hex characters, got {0:?}")]
pub struct ParseNodeIdError(pub String);

impl std::str::FromStr for NodeId {
    type Err = ParseNodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseNodeIdError(s.to_string()))?;
        Ok(NodeId(out))
    }
}

/// A static X25519 keypair. The secret is zeroized when dropped.
#[derive(Clone)]
pub struct Identity {
    secret: Zeroizing<[u8; 32]>,
    id: NodeId,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Why a key file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// No file at that path.
    #[error("key file {0}: does not exist (create one with `shardwire keygen --out {0}`)")]
    Missing(PathBuf),
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Group or other users may read the file.
    #[error("key file {path}: permissions {mode:04o} let other users read the secret; run `chmod 600 {path}`")]
    WorldReadable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret is shorter than 64 hex characters.
    #[error("key file {path}: the secret is {len} hex characters, expected 64 (file truncated?)")]
    Short {
        /// The file.
        path: PathBuf,
        /// Hex characters found.
        len: usize,
    },
    /// The file is not a shardwire key file, or its content is damaged.
    #[error("key file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// Refusing to overwrite an existing file.
    #[error("key file {0}: already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

const HEADER: &str = "# shardwire node key (X25519 static keypair). Keep this file secret.";

impl Identity {
    /// A fresh random keypair.
    pub fn generate() -> Identity {
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut rng =
            DefaultResolver.resolve_rng().unwrap_or_else(|| unreachable!("snow's default resolver has an RNG"));
        // Failing to read the OS random source is not recoverable for a node.
        if rng.try_fill_bytes(&mut secret[..]).is_err() {
            panic!("the operating system's random number generator failed");
        }
        Identity::from_secret(*secret)
    }

    /// The keypair for a given 32-byte secret (clamping is X25519's own).
    pub fn from_secret(secret: [u8; 32]) -> Identity {
        let secret = Zeroizing::new(secret);
        let mut dh =
            DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap_or_else(|| unreachable!("X25519 is built in"));
        dh.set(&secret[..]);
        let mut id = [0u8; 32];
        id.copy_from_slice(dh.pubkey());
        Identity { secret, id: NodeId(id) }
    }

    /// This identity's NodeId (public key).
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// The secret, for the Noise handshake.
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Writes a new key file (mode 0600); refuses to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists(path.to_path_buf())
            } else {
                KeyFileError::Io { path: path.to_path_buf(), source: e }
            }
        })?;
        let text = Zeroizing::new(format!("{HEADER}\nnode-id {}\nsecret {}\n", self.id, hex::encode(&self.secret[..])));
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| KeyFileError::Io { path: path.to_path_buf(), source: e })
    }

    /// Reads a key file written by [`Identity::save`] / `shardwire keygen`.
    ///
    /// Refuses files that others can read, that are short or damaged, or
    /// whose recorded node-id does not match the secret.
    pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
        let p = || path.to_path_buf();
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeyFileError::Missing(p()),
            _ => KeyFileError::Io { path: p(), source: e },
        })?;
        if !meta.is_file() {
            return Err(KeyFileError::Corrupt { path: p(), reason: "not a regular file" });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::WorldReadable { path: p(), mode });
        }
        let raw = Zeroizing::new(std::fs::read(path).map_err(|e| KeyFileError::Io { path: p(), source: e })?);
        let text =
            std::str::from_utf8(&raw).map_err(|_| KeyFileError::Corrupt { path: p(), reason: "not a text file" })?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(KeyFileError::Corrupt { path: p(), reason: "not a shardwire key file (missing header line)" });
        }
        let (mut recorded_id, mut secret_hex) = (None, None);
        for line in lines {
            match line.split_once(' ') {
                Some(("node-id", v)) => recorded_id = Some(v.trim()),
                Some(("secret", v)) => secret_hex = Some(v.trim()),
                _ if line.trim().is_empty() => {}
                _ => return Err(KeyFileError::Corrupt { path: p(), reason: "unexpected line" }),
            }
        }
        let secret_hex = secret_hex.ok_or_else(|| KeyFileError::Short { path: p(), len: 0 })?;
        if secret_hex.len() < 64 {
            return Err(KeyFileError::Short { path: p(), len: secret_hex.len() });
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret_hex, &mut secret[..])
            .map_err(|_| KeyFileError::Corrupt { path: p(), reason: "the secret is not 64 hex characters" })?;
        let identity = Identity::from_secret(*secret);
        if let Some(id) = recorded_id {
            if id != identity.id.to_hex() {
                return Err(KeyFileError::Corrupt { path: p(), reason: "node-id does not match the secret" });
            }
        }
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shardwire-id-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn save_load_round_trip() {
        let id = Identity::generate();
        let path = tmp("ok");
        id.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Identity::load(&path).unwrap().node_id(), id.node_id());
        assert!(matches!(id.save(&path), Err(KeyFileError::Exists(_))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_files_name_the_file_and_problem() {
        let missing = tmp("missing");
        let e = Identity::load(&missing).unwrap_err();
        assert!(matches!(e, KeyFileError::Missing(_)));
        assert!(e.to_string().contains(missing.to_str().unwrap()));

        let path = tmp("perm");
        Identity::generate().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::WorldReadable { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"));
        std::fs::remove_file(&path).unwrap();

        let write = |name: &str, body: &str| {
            let path = tmp(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
            path
        };
        let short = write("short", &format!("{HEADER}\nsecret abcd\n"));
        assert!(matches!(Identity::load(&short).unwrap_err(), KeyFileError::Short { len: 4, .. }));
        let junk = write("junk", "hello\n");
        assert!(matches!(Identity::load(&junk).unwrap_err(), KeyFileError::Corrupt { .. }));
        let nonhex = write("nonhex", &format!("{HEADER}\nsecret {}\n", "zz".repeat(32)));
        assert!(matches!(Identity::load(&nonhex).unwrap_err(), KeyFileError::Corrupt { .. }));
        let id = Identity::generate();
        let other = Identity::generate();
        let mismatch =
            write("mismatch", &format!("{HEADER}\nnode-id {}\nsecret {}\n", other.node_id(), hex::encode(id.secret())));
        let e = Identity::load(&mismatch).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        for p in [short, junk, nonhex, mismatch] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn node_id_hex() {
        let id = Identity::from_secret([7; 32]).node_id();
        assert_eq!(id.to_hex().parse::<NodeId>().unwrap(), id);
        assert!("xyz".parse::<NodeId>().is_err());
    }
}
