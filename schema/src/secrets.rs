//! Secrets at rest: AEAD encryption (XChaCha20-Poly1305, a random 24-byte nonce per value) with a
//! 32-byte key from `CRMSYNC_SECRET_KEY` (base64). Each ciphertext is bound to the slot it is
//! stored in (associated data), so a value copied to another row does not decrypt. Plaintexts
//! are never logged; `SecretBox`'s `Debug` shows nothing of the key.

use crate::error::{StoreError, StoreResult};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// The environment variable holding the base64 of the 32-byte key.
pub const SECRET_KEY_ENV: &str = "CRMSYNC_SECRET_KEY";
const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Encrypts and decrypts secrets with one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

/// A fresh random key, base64-encoded (what `crmsync secret-key generate` prints).
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    STANDARD.encode(key)
}

impl SecretBox {
    /// A box from the base64 of a 32-byte key.
    pub fn from_base64(key: &str) -> StoreResult<Self> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| bad_key())?;
        if bytes.len() != 32 {
            return Err(bad_key());
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| bad_key())?;
        Ok(SecretBox { cipher })
    }

    /// The box for `CRMSYNC_SECRET_KEY`, `None` when the variable is unset or empty.
    pub fn from_env() -> StoreResult<Option<Self>> {
        match std::env::var(SECRET_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => SecretBox::from_base64(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Encrypts `plaintext` for the slot named `context` (e.g. `service_account:example.com`).
    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> StoreResult<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Secret("encrypting a secret failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    /// Decrypts a value made by [`SecretBox::encrypt`] for the same `context`.
    pub fn decrypt(&self, stored: &str, context: &str) -> StoreResult<Vec<u8>> {
        let undecryptable = || {
            StoreError::Secret(format!(
                "a stored secret ({context}) cannot be decrypted: it was encrypted with another \
                 {SECRET_KEY_ENV} or is damaged; restore the original key or store the secret again"
            ))
        };
        let body = stored.strip_prefix(PREFIX).ok_or_else(undecryptable)?;
        let raw = STANDARD.decode(body).map_err(|_| undecryptable())?;
        if raw.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| undecryptable())
    }

    /// Decrypts to a UTF-8 string.
    pub fn decrypt_string(&self, stored: &str, context: &str) -> StoreResult<String> {
        String::from_utf8(self.decrypt(stored, context)?)
            .map_err(|_| StoreError::Secret(format!("a stored secret ({context}) is not UTF-8")))
    }
}

fn bad_key() -> StoreError {
    StoreError::Secret(format!(
        "{SECRET_KEY_ENV} must be the base64 of exactly 32 bytes; generate one with \
         `crmsync secret-key generate` or `openssl rand -base64 32`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let b = SecretBox::from_base64(&generate_key()).unwrap();
        let c = b.encrypt(b"refresh-token-123", "oauth:u1").unwrap();
        assert!(!c.contains("refresh-token-123"));
        assert_eq!(b.decrypt(&c, "oauth:u1").unwrap(), b"refresh-token-123");
        assert!(b.decrypt(&c, "oauth:u2").is_err(), "bound to its slot");
        let other = SecretBox::from_base64(&generate_key()).unwrap();
        assert!(
            other.decrypt(&c, "oauth:u1").is_err(),
            "another key cannot read it"
        );
        assert_ne!(
            c,
            b.encrypt(b"refresh-token-123", "oauth:u1").unwrap(),
            "random nonce"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SecretBox::from_base64("abc").is_err());
        assert!(SecretBox::from_base64(&STANDARD.encode([0u8; 16])).is_err());
    }
}
