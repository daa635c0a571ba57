//! Secrets at rest: AES-256-GCM over tokens, authorization codes and hook keys.
//!
//! A stored value is `key_id (1 byte) ‖ nonce (12 bytes) ‖ ciphertext+tag`.
//! The nonce is random for every write. The associated data binds a value to
//! its row and column (`account:42:refresh_token`), so a ciphertext copied to
//! another row or column does not decrypt.
//!
//! Keys rotate: the current key (`security.encryption_key`) writes, and old
//! keys (`security.old_encryption_keys`) still read. A value names its key
//! by the id byte, derived from the key itself (2..=255), so no key list
//! order has to be kept. Values written before ids were derived carry id 1
//! and are tried with every configured key; AES-GCM's tag tells the right
//! one. `amohook reencrypt` rewrites old values with the current key.

use std::{io::Write as _, path::Path};

use aes_gcm::{
    aead::{Aead, Generate, KeyInit, Nonce, Payload},
    Aes256Gcm, Key,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use rand::Rng as _;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// The id of values written before key ids were derived from keys.
pub const LEGACY_KEY_ID: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("stored secret is written with unknown key id {0}")]
    UnknownKey(u8),
    #[error("stored secret does not decrypt with the configured key")]
    Undecryptable,
}

/// The id byte a key writes: 2..=255, from a digest of the key (it says
/// nothing usable about the key).
pub fn key_id(key: &[u8; 32]) -> u8 {
    let digest = Sha256::new()
        .chain_update(b"amohook key id\0")
        .chain_update(key)
        .finalize();
    2 + digest[0] % 254
}

/// Whether one of `old` is another key with `current`'s id byte: its
/// values would pass for the current key's (`amohook reencrypt` would skip
/// them, the key check would take them as current), so such a set of keys
/// is refused. One new key in 254 draws one.
pub fn id_taken_by_old_key(current: &[u8; 32], old: &[[u8; 32]]) -> bool {
    let id = key_id(current);
    old.iter().any(|k| k != current && key_id(k) == id)
}

#[derive(Clone)]
struct SealKey {
    id: u8,
    aead: Aes256Gcm,
}

impl SealKey {
    fn new(key: &[u8; 32]) -> Self {
        SealKey {
            id: key_id(key),
            aead: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
        }
    }
}

/// Encrypts and decrypts column values, and signs short values (install
/// states). Cheap to clone.
#[derive(Clone)]
pub struct Cipher {
    current: SealKey,
    old: Vec<SealKey>,
    /// HMAC key derived from the current key, for signatures.
    signing: [u8; 32],
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Cipher::with_old_keys(key, &[])
    }

    /// `key` writes; it and `old` read.
    pub fn with_old_keys(key: &[u8; 32], old: &[[u8; 32]]) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
        mac.update(b"amohook signing key");
        Cipher {
            current: SealKey::new(key),
            old: old.iter().filter(|k| *k != key).map(SealKey::new).collect(),
            signing: mac.finalize().into_bytes().into(),
        }
    }

    /// The id byte of values written now.
    pub fn current_key_id(&self) -> u8 {
        self.current.id
    }

    pub fn encrypt(&self, plaintext: &str, context: &str) -> Vec<u8> {
        // A random nonce from the operating system's generator.
        let nonce = Nonce::<Aes256Gcm>::generate();
        let sealed = self
            .current
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, stored: &[u8], context: &str) -> Result<SecretString, CryptoError> {
        let (&key_id, rest) = stored.split_first().ok_or(CryptoError::Undecryptable)?;
        let mut keys = std::iter::once(&self.current)
            .chain(&self.old)
            .filter(|k| key_id == LEGACY_KEY_ID || k.id == key_id)
            .peekable();
        if keys.peek().is_none() {
            return Err(CryptoError::UnknownKey(key_id));
        }
        if rest.len() < NONCE_LEN {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = <&Nonce<Aes256Gcm>>::try_from(nonce).map_err(|_| CryptoError::Undecryptable)?;
        let plain = keys
            .find_map(|key| {
                key.aead
                    .decrypt(
                        nonce,
                        Payload {
                            msg: sealed,
                            aad: context.as_bytes(),
                        },
                    )
                    .ok()
            })
            .ok_or(CryptoError::Undecryptable)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Undecryptable)
    }

    /// HMAC-SHA256 of `data` under a key derived from the current key.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        self.mac_of(data).finalize().into_bytes().into()
    }

    /// Whether `tag` (the leading bytes of a signature, at least 16) signs
    /// `data`; compared in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        if tag.len() < 16 {
            return false;
        }
        self.mac_of(data).verify_truncated_left(tag).is_ok()
    }

    /// HMAC-SHA256 under the signing key, fed with `data`.
    fn mac_of(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.signing).expect("32 bytes");
        mac.update(data);
        mac
    }
}

/// A URL-safe random secret of `bytes` random bytes (hook keys, states).
pub fn random_token(bytes: usize) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Hex SHA-256, used to look rows up by a secret without storing it plainly.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Decodes a base64 key of exactly 32 bytes.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    BASE64.decode(text.trim()).ok()?.try_into().ok()
}

/// Reads the key from `path`, or creates the file with a new random key
/// (mode 0600) when it does not exist. Returns the key and whether it was
/// created now.
pub fn load_or_create_key_file(path: &Path) -> anyhow::Result<([u8; 32], bool)> {
    use anyhow::Context as _;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = decode_key(&text).with_context(|| {
                format!(
                    "key file {} does not hold base64 of 32 bytes",
                    path.display()
                )
            })?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("cannot create key file {}", path.display()))?;
            writeln!(file, "{}", BASE64.encode(key))
                .and_then(|_| file.sync_all())
                .with_context(|| format!("cannot write key file {}", path.display()))?;
            Ok((key, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read key file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn round_trip_with_matching_context() {
        let cipher = Cipher::new(&[7; 32]);
        let sealed = cipher.encrypt("refresh-123", "account:1:refresh_token");
        assert_eq!(sealed[0], key_id(&[7; 32]));
        assert_ne!(sealed[0], LEGACY_KEY_ID);
        assert!(!sealed.windows(11).any(|w| w == b"refresh-123"));
        let opened = cipher.decrypt(&sealed, "account:1:refresh_token").unwrap();
        assert_eq!(opened.expose_secret(), "refresh-123");
    }

    #[test]
    fn stored_values_keep_their_layout() {
        // key id 1, nonce 01..0c, then AES-256-GCM ciphertext and tag of
        // "refresh-123" under key [7; 32] with its context as associated data.
        let stored = hex::decode(
            "010102030405060708090a0b0cc9198eec0f998a01d40c31c3db76a2f5c9ddc7bee68a19cb793b3a",
        )
        .unwrap();
        let opened = Cipher::new(&[7; 32])
            .decrypt(&stored, "account:1:refresh_token")
            .unwrap();
        assert_eq!(opened.expose_secret(), "refresh-123");
    }

    #[test]
    fn sha256_hex_is_the_standard_digest() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn every_write_uses_a_new_nonce() {
        let cipher = Cipher::new(&[7; 32]);
        assert_ne!(cipher.encrypt("x", "c"), cipher.encrypt("x", "c"));
    }

    #[test]
    fn a_value_moved_to_another_row_or_key_does_not_decrypt() {
        let cipher = Cipher::new(&[7; 32]);
        let sealed = cipher.encrypt("secret", "account:1:access_token");
        assert!(cipher.decrypt(&sealed, "account:2:access_token").is_err());
        assert!(cipher.decrypt(&sealed, "account:1:refresh_token").is_err());
        assert!(Cipher::new(&[8; 32])
            .decrypt(&sealed, "account:1:access_token")
            .is_err());
        let mut other_key_id = sealed.clone();
        let other = if sealed[0] == 9 { 10 } else { 9 };
        other_key_id[0] = other;
        assert!(matches!(
            cipher.decrypt(&other_key_id, "account:1:access_token"),
            Err(CryptoError::UnknownKey(id)) if id == other
        ));
        assert!(cipher.decrypt(&[], "c").is_err());
        assert!(cipher.decrypt(&[sealed[0], 1, 2], "c").is_err());
    }

    #[test]
    fn old_keys_read_and_the_current_key_writes() {
        let (old, new) = ([7; 32], [8; 32]);
        let written_before = Cipher::new(&old).encrypt("refresh-1", "c");
        let rotated = Cipher::with_old_keys(&new, &[old]);
        assert_eq!(
            rotated
                .decrypt(&written_before, "c")
                .unwrap()
                .expose_secret(),
            "refresh-1"
        );
        let written_now = rotated.encrypt("refresh-2", "c");
        assert_eq!(written_now[0], key_id(&new));
        assert_ne!(key_id(&new), key_id(&old));
        assert!(Cipher::new(&old).decrypt(&written_now, "c").is_err());
        // Without the old key, the old value is not readable.
        assert!(Cipher::new(&new).decrypt(&written_before, "c").is_err());
    }

    #[test]
    fn legacy_values_are_read_with_any_configured_key() {
        // The layout test's value: key id 1, written with [7; 32].
        let stored = hex::decode(
            "010102030405060708090a0b0cc9198eec0f998a01d40c31c3db76a2f5c9ddc7bee68a19cb793b3a",
        )
        .unwrap();
        let rotated = Cipher::with_old_keys(&[8; 32], &[[7; 32]]);
        assert_eq!(
            rotated
                .decrypt(&stored, "account:1:refresh_token")
                .unwrap()
                .expose_secret(),
            "refresh-123"
        );
        assert!(Cipher::new(&[8; 32])
            .decrypt(&stored, "account:1:refresh_token")
            .is_err());
    }

    #[test]
    fn signatures_verify_only_for_their_data_and_key() {
        let cipher = Cipher::new(&[7; 32]);
        let tag = cipher.sign(b"state-1");
        assert!(cipher.verify(b"state-1", &tag));
        assert!(cipher.verify(b"state-1", &tag[..16]));
        assert!(!cipher.verify(b"state-1", &tag[..15]));
        assert!(!cipher.verify(b"state-2", &tag));
        assert!(!Cipher::new(&[8; 32]).verify(b"state-1", &tag));
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/amohook.key");
        let (first, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, created) = load_or_create_key_file(&path).unwrap();
        assert!(!created);
        assert_eq!(first, second);

        std::fs::write(&path, "not a key").unwrap();
        assert!(load_or_create_key_file(&path).is_err());
    }

    #[test]
    fn random_tokens_carry_enough_entropy() {
        let a = random_token(24);
        assert_eq!(a.len(), 32); // 192 bits, URL-safe
        assert_ne!(a, random_token(24));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
