//! The token vault: Plaid access tokens are stored only as AES-256-GCM ciphertext.
//!
//! Stored value: `[key version: 1 byte][nonce: 12 random bytes][ciphertext + 16-byte tag]`,
//! with the item id as associated data, so a sealed token copied onto another item's row
//! does not open. The version byte lets keys rotate later without guessing.
//!
//! The key comes from `FINQ_ENCRYPTION_KEY` (base64 of 32 bytes) or from `vault.key` in the
//! data directory, created with mode 0600 on first use.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};

/// The version byte written with every sealed value by this key.
pub const KEY_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
pub const KEY_FILE_NAME: &str = "vault.key";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the encryption key from {origin} is not valid: {reason}. It must be base64 of exactly 32 bytes (make one with `openssl rand -base64 32`)"
    )]
    InvalidKey { origin: String, reason: String },
    #[error("cannot read or create the key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot decrypt the access token of item {item_id}: the encryption key is not the one it was sealed with. \
         Restore the original key (FINQ_ENCRYPTION_KEY or the vault.key file in the data directory), or re-link the institution with `finq link`"
    )]
    WrongKey { item_id: String },
    #[error(
        "the stored access token of item {item_id} uses key version {version}, which this finq does not know"
    )]
    UnknownKeyVersion { item_id: String, version: u8 },
    #[error(
        "the stored access token of item {item_id} is damaged (too short to be a sealed value)"
    )]
    Corrupt { item_id: String },
}

pub struct TokenVault {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVault([REDACTED])")
    }
}

impl TokenVault {
    pub fn from_key(key: &[u8; 32]) -> Self {
        TokenVault {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// Parse a base64 key (as in `FINQ_ENCRYPTION_KEY`).
    pub fn from_base64(b64: &SecretString, origin: &str) -> Result<Self, VaultError> {
        let bytes = B64
            .decode(b64.expose_secret().trim())
            .map_err(|e| VaultError::InvalidKey {
                origin: origin.to_string(),
                reason: format!("not base64 ({e})"),
            })?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| VaultError::InvalidKey {
                origin: origin.to_string(),
                reason: format!("{} bytes instead of 32", b.len()),
            })?;
        Ok(Self::from_key(&key))
    }

    /// The key from the environment if given, else from (or into) the key file.
    pub fn open_or_create(
        env_key: Option<&SecretString>,
        data_dir: &Path,
    ) -> Result<Self, VaultError> {
        if let Some(k) = env_key {
            return Self::from_base64(k, "FINQ_ENCRYPTION_KEY");
        }
        let path = data_dir.join(KEY_FILE_NAME);
        let io_err = |source| VaultError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mode = std::fs::metadata(&path)
                    .map_err(io_err)?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "key file is readable by others; setting it to 0600");
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io_err)?;
                }
                Self::from_base64(&SecretString::from(text), &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io_err)?;
                let key = Aes256Gcm::generate_key(OsRng);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path);
                match &mut file {
                    Ok(f) => {
                        f.write_all(B64.encode(key).as_bytes()).map_err(io_err)?;
                        f.sync_all().map_err(io_err)?;
                        tracing::info!(path = %path.display(), "created a new token encryption key");
                        Ok(Self::from_key(&key.into()))
                    }
                    // Another finq process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::open_or_create(None, data_dir)
                    }
                    Err(_) => Err(io_err(file.unwrap_err())),
                }
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Seal an access token for one item.
    pub fn seal(&self, item_id: &str, token: &SecretString) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: item_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short token cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(KEY_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Open a sealed token; a wrong key or another item's value is an error, never garbage.
    pub fn open(&self, item_id: &str, sealed: &[u8]) -> Result<SecretString, VaultError> {
        let (&version, rest) = sealed.split_first().ok_or_else(|| VaultError::Corrupt {
            item_id: item_id.to_string(),
        })?;
        if version != KEY_VERSION {
            return Err(VaultError::UnknownKeyVersion {
                item_id: item_id.to_string(),
                version,
            });
        }
        if rest.len() < NONCE_LEN + 16 {
            return Err(VaultError::Corrupt {
                item_id: item_id.to_string(),
            });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: item_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::WrongKey {
                item_id: item_id.to_string(),
            })?;
        let text = String::from_utf8(plain).map_err(|_| VaultError::Corrupt {
            item_id: item_id.to_string(),
        })?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> SecretString {
        SecretString::from("access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6".to_string())
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let v = TokenVault::from_key(&[7u8; 32]);
        let a = v.seal("item1", &token());
        let b = v.seal("item1", &token());
        assert_ne!(a, b, "equal tokens must give different ciphertexts");
        assert_eq!(
            v.open("item1", &a).unwrap().expose_secret(),
            token().expose_secret()
        );
        assert_eq!(
            v.open("item1", &b).unwrap().expose_secret(),
            token().expose_secret()
        );
        assert!(!String::from_utf8_lossy(&a).contains("access-sandbox"));
    }

    #[test]
    fn wrong_key_wrong_item_and_damage_fail_clearly() {
        let v = TokenVault::from_key(&[7u8; 32]);
        let sealed = v.seal("item1", &token());
        let other = TokenVault::from_key(&[8u8; 32]);
        let err = other.open("item1", &sealed).unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { .. }));
        assert!(err.to_string().contains("FINQ_ENCRYPTION_KEY"));
        assert!(matches!(
            v.open("item2", &sealed),
            Err(VaultError::WrongKey { .. })
        ));
        assert!(matches!(
            v.open("item1", &sealed[..10]),
            Err(VaultError::Corrupt { .. })
        ));
        let mut bumped = sealed.clone();
        bumped[0] = 9;
        assert!(matches!(
            v.open("item1", &bumped),
            Err(VaultError::UnknownKeyVersion { version: 9, .. })
        ));
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = TokenVault::open_or_create(None, dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = v1.seal("i", &token());
        let v2 = TokenVault::open_or_create(None, dir.path()).unwrap();
        assert!(v2.open("i", &sealed).is_ok());
    }

    #[test]
    fn bad_env_keys_are_rejected() {
        let short = SecretString::from(B64.encode([1u8; 16]));
        let err = TokenVault::from_base64(&short, "FINQ_ENCRYPTION_KEY").unwrap_err();
        assert!(err.to_string().contains("16 bytes instead of 32"), "{err}");
        let junk = SecretString::from("not base64!!".to_string());
        assert!(TokenVault::from_base64(&junk, "FINQ_ENCRYPTION_KEY").is_err());
    }
}
