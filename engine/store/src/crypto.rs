//! Envelope encryption at rest (SECURITY R7): AES-256-GCM with a random 96-bit nonce per value,
//! the table, row, column and key id as associated data (a ciphertext moved to another row or
//! column does not decrypt), and the key id stored in the ciphertext header so that a keyring
//! can hold old keys during rotation. Keys never touch the database.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 2] = b"T1";

/// Why a key could not be loaded or a value not decrypted. Messages name the variable or file.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key material is not 32 bytes of base64.
    #[error(
        "{source_name} is not a valid master key: {reason}; a key is 32 random bytes in base64 (generate one with `openssl rand -base64 32`)"
    )]
    BadKey {
        /// Where the key came from (`TERN_MASTER_KEY` or a file path).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The key file could not be read or created.
    #[error("cannot use key file {}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holding a secret (the key file, a kept token) can be read by other users.
    #[error("{} holds a secret but is readable by other users (mode {mode:o}); run `chmod 600 {}`", path.display(), path.display())]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The ciphertext was made with a key that is not in the keyring.
    #[error(
        "a stored value ({aad}) was encrypted with key {key_id}, which is not loaded; set TERN_MASTER_KEY (or restore the key file) to the key used when it was stored"
    )]
    UnknownKey {
        /// The key id in the ciphertext.
        key_id: String,
        /// Which value.
        aad: String,
    },
    /// Authentication failed: wrong key, or the value was tampered with or moved.
    #[error("a stored value ({aad}) does not decrypt: wrong master key, or the value was modified")]
    Decrypt {
        /// Which value.
        aad: String,
    },
    /// The stored bytes are not a Tern ciphertext.
    #[error("a stored value ({aad}) is not a Tern ciphertext")]
    Malformed {
        /// Which value.
        aad: String,
    },
}

/// One AES-256 key with its id. Never prints its material.
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id={}, [redacted])", self.id)
    }
}

impl MasterKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 32 {
            return Err(format!("it is {} bytes, not 32", bytes.len()));
        }
        let digest = Sha256::new().chain_update(b"tern-key-id:").chain_update(bytes).finalize();
        let id = hex::encode(&digest[..6]);
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Self { id, cipher })
    }

    /// A key from base64 text; `source_name` goes into the error.
    pub fn from_base64(text: &str, source_name: &str) -> Result<Self, CryptoError> {
        let bad = |reason: String| CryptoError::BadKey { source_name: source_name.to_string(), reason };
        let bytes = zeroize::Zeroizing::new(B64.decode(text.trim()).map_err(|e| bad(format!("not base64 ({e})")))?);
        Self::from_bytes(&bytes).map_err(bad)
    }

    /// A new random key and its base64 text.
    pub fn generate() -> (Self, zeroize::Zeroizing<String>) {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        let text = zeroize::Zeroizing::new(B64.encode(bytes.as_ref()));
        // 32 bytes always make a key.
        let key = Self::from_bytes(bytes.as_ref()).unwrap_or_else(|_| unreachable!("32-byte key"));
        (key, text)
    }

    /// The key id stored with each ciphertext.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Where a value lives, bound into its ciphertext as associated data.
#[derive(Clone, Copy, Debug)]
pub struct Aad<'a> {
    /// The table.
    pub table: &'a str,
    /// The row key.
    pub row: &'a str,
    /// The column.
    pub column: &'a str,
}

impl Aad<'_> {
    fn bytes(&self, key_id: &str) -> Vec<u8> {
        format!("tern/v1\0{}\0{}\0{}\0{key_id}", self.table, self.row, self.column).into_bytes()
    }

    fn describe(&self) -> String {
        format!("{}.{} of {}", self.table, self.column, self.row)
    }
}

/// The current key (used for new values) and older keys (still readable).
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    older: Vec<MasterKey>,
}

impl Keyring {
    /// A keyring with one key.
    pub fn new(current: MasterKey) -> Self {
        Self { current, older: Vec::new() }
    }

    /// Adds a key that can still decrypt but is not used for new values.
    pub fn with_older(mut self, key: MasterKey) -> Self {
        if key.id != self.current.id && !self.older.iter().any(|k| k.id == key.id) {
            self.older.push(key);
        }
        self
    }

    /// The id of the key new values are encrypted with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` for the place `aad` names.
    pub fn encrypt(&self, aad: Aad<'_>, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.current;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad_bytes = aad.bytes(&key.id);
        let ct = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad_bytes })
            // AES-GCM encryption fails only for inputs beyond 64 GiB.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(3 + key.id.len() + 12 + ct.len());
        out.extend_from_slice(MAGIC);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a value stored at `aad`.
    pub fn decrypt(&self, aad: Aad<'_>, blob: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
        let malformed = || CryptoError::Malformed { aad: aad.describe() };
        let rest = blob.strip_prefix(MAGIC.as_slice()).ok_or_else(malformed)?;
        let (&id_len, rest) = rest.split_first().ok_or_else(malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + 12 + 16 {
            return Err(malformed());
        }
        let key_id = std::str::from_utf8(&rest[..id_len]).map_err(|_| malformed())?;
        let nonce = &rest[id_len..id_len + 12];
        let ct = &rest[id_len + 12..];
        let key = std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey { key_id: key_id.to_string(), aad: aad.describe() })?;
        let aad_bytes = aad.bytes(key_id);
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad_bytes })
            .map(zeroize::Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt { aad: aad.describe() })
    }

    /// The key id a ciphertext was made with, if it is one.
    pub fn key_id_of(blob: &[u8]) -> Option<&str> {
        let rest = blob.strip_prefix(MAGIC.as_slice())?;
        let (&id_len, rest) = rest.split_first()?;
        std::str::from_utf8(rest.get(..usize::from(id_len))?).ok()
    }
}

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "TERN_MASTER_KEY";
/// The environment variable holding the previous master key during a rotation.
pub const PREVIOUS_KEY_ENV: &str = "TERN_MASTER_KEY_PREVIOUS";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "master.key";
/// The file holding the next key while `tern keys rotate` runs.
pub const NEXT_KEY_FILE: &str = "master.key.next";

/// Reads the key file, checking that only the owner can read it ([`read_private_file`]).
pub fn read_key_file(path: &Path) -> Result<MasterKey, CryptoError> {
    let text = read_private_file(path)?.ok_or_else(|| CryptoError::KeyFile {
        path: path.into(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    MasterKey::from_base64(&text, &path.display().to_string())
}

/// The text of a file that holds a secret (the key file, `admin.token`, `channel.token`,
/// `webhook.secret`), `None` when there is no such file. Refused when other users can read
/// it: a secret they could read is no secret, and Tern does not use it silently.
///
/// # Errors
/// [`CryptoError::KeyFileMode`] (group or other bits set), [`CryptoError::KeyFile`] (it
/// cannot be read).
pub fn read_private_file(path: &Path) -> Result<Option<zeroize::Zeroizing<String>>, CryptoError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CryptoError::KeyFile { path: path.into(), source }),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFileMode { path: path.into(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFile { path: path.into(), source })?;
    Ok(Some(zeroize::Zeroizing::new(text)))
}

/// Writes a new key file readable only by the owner; fails if the file exists.
pub fn write_key_file(path: &Path, text: &str) -> Result<(), CryptoError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let err = |source| CryptoError::KeyFile { path: path.into(), source };
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(column: &str) -> Aad<'_> {
        Aad { table: "tokens", row: "teamleader/workspace", column }
    }

    #[test]
    fn round_trip_and_binding() {
        let (k, _) = MasterKey::generate();
        let ring = Keyring::new(k);
        let ct = ring.encrypt(aad("access_token"), b"at-123");
        assert_eq!(ring.decrypt(aad("access_token"), &ct).unwrap().as_slice(), b"at-123");
        // Moved to another column: does not decrypt.
        assert!(matches!(ring.decrypt(aad("refresh_token"), &ct), Err(CryptoError::Decrypt { .. })));
        // Tampered: does not decrypt.
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ring.decrypt(aad("access_token"), &bad).is_err());
        assert!(!ct.windows(6).any(|w| w == b"at-123"), "no plaintext in the ciphertext");
        assert!(matches!(ring.decrypt(aad("x"), b"plain"), Err(CryptoError::Malformed { .. })));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let (old, old_text) = MasterKey::generate();
        let old_ring = Keyring::new(old);
        let ct = old_ring.encrypt(aad("a"), b"v");
        let (new, _) = MasterKey::generate();
        let ring = Keyring::new(new).with_older(MasterKey::from_base64(&old_text, "test").unwrap());
        assert_eq!(ring.decrypt(aad("a"), &ct).unwrap().as_slice(), b"v");
        let (other, _) = MasterKey::generate();
        let wrong = Keyring::new(other);
        assert!(matches!(wrong.decrypt(aad("a"), &ct), Err(CryptoError::UnknownKey { .. })));
        assert_eq!(Keyring::key_id_of(&ct), Some(old_ring.current_id()));
    }

    #[test]
    fn keys_never_print() {
        let (k, text) = MasterKey::generate();
        assert!(!format!("{k:?}").contains(text.as_str()));
        assert!(
            MasterKey::from_base64("c2hvcnQ=", "TERN_MASTER_KEY").unwrap_err().to_string().contains("TERN_MASTER_KEY")
        );
    }

    #[test]
    fn key_file_is_private() {
        let dir = tempfile_dir();
        let path = dir.join(KEY_FILE);
        let (_, text) = MasterKey::generate();
        write_key_file(&path, &text).unwrap();
        assert!(read_key_file(&path).is_ok());
        assert!(write_key_file(&path, &text).is_err(), "never overwrites a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(read_key_file(&path), Err(CryptoError::KeyFileMode { .. })));
            // Every file holding a secret (kept tokens too) follows the same rule.
            let token = dir.join("admin.token");
            write_key_file(&token, "a-kept-token").unwrap();
            assert_eq!(
                read_private_file(&token).unwrap().as_deref().map(|t| t.trim().to_string()),
                Some("a-kept-token".into())
            );
            std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640)).unwrap();
            let err = read_private_file(&token).unwrap_err().to_string();
            assert!(err.contains("readable by other users") && err.contains("chmod 600"), "{err}");
            assert!(read_private_file(&dir.join("none")).unwrap().is_none());
        }
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> PathBuf {
        let mut bytes = [0u8; 8];
        OsRng.fill_bytes(&mut bytes);
        let dir = std::env::temp_dir().join(format!("tern-crypto-{}", u64::from_le_bytes(bytes)));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
