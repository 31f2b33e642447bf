//! Opaque sync and page tokens. A sync token encodes (user, API, epoch, change position, the
//! time of the full sync that started the chain); a page token additionally encodes the
//! snapshot position, a cursor and a fingerprint of the other request parameters, so a page
//! token used with different parameters is rejected. Epochs move when tokens are expired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A decoded sync token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken {
    pub user_tag: u64,
    pub api: char,
    pub epoch: u64,
    /// Changes with a sequence number above this one are "new".
    pub seq: u64,
    /// Emulated-clock milliseconds of the full sync that started this chain.
    pub full_sync_ms: i64,
}

/// A decoded page token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub user_tag: u64,
    pub api: char,
    pub epoch: u64,
    /// Snapshot: the position the final page's sync token will carry.
    pub snapshot: u64,
    /// Resume after this change sequence (or offset, for sorted listings).
    pub cursor: u64,
    /// Items of the item at `cursor` already returned (recurring expansions).
    pub skip: u64,
    pub params: u64,
    pub full_sync_ms: i64,
}

/// The BTreeMap range `from..=to`, empty (and never panicking) when `from > to`.
pub fn seq_range(from: u64, to: u64) -> (std::ops::Bound<u64>, std::ops::Bound<u64>) {
    use std::ops::Bound::{Excluded, Included};
    if from > to {
        (Included(0), Excluded(0))
    } else {
        (Included(from), Included(to))
    }
}

/// A short stable tag for a user email (binds tokens to their user).
pub fn user_tag(email: &str) -> u64 {
    fingerprint([email.to_ascii_lowercase()].iter().map(String::as_str))
}

/// A fingerprint of request parameters (order-insensitive).
pub fn fingerprint<'a>(parts: impl Iterator<Item = &'a str>) -> u64 {
    let mut v: Vec<&str> = parts.collect();
    v.sort_unstable();
    let mut h = Sha256::new();
    for p in v {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

impl SyncToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "s{}:{:x}:{}:{}:{}",
            self.api, self.user_tag, self.epoch, self.seq, self.full_sync_ms
        ))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?).ok()?;
        let rest = raw.strip_prefix('s')?;
        let mut chars = rest.chars();
        let api = chars.next()?;
        let mut parts = chars.as_str().strip_prefix(':')?.split(':');
        let user_tag = u64::from_str_radix(parts.next()?, 16).ok()?;
        let epoch = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let full_sync_ms = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(SyncToken {
            user_tag,
            api,
            epoch,
            seq,
            full_sync_ms,
        })
    }
}

impl PageToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "p{}:{:x}:{}:{}:{}:{}:{:x}:{}",
            self.api,
            self.user_tag,
            self.epoch,
            self.snapshot,
            self.cursor,
            self.skip,
            self.params,
            self.full_sync_ms
        ))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?).ok()?;
        let rest = raw.strip_prefix('p')?;
        let mut chars = rest.chars();
        let api = chars.next()?;
        let mut parts = chars.as_str().strip_prefix(':')?.split(':');
        let t = PageToken {
            api,
            user_tag: u64::from_str_radix(parts.next()?, 16).ok()?,
            epoch: parts.next()?.parse().ok()?,
            snapshot: parts.next()?.parse().ok()?,
            cursor: parts.next()?.parse().ok()?,
            skip: parts.next()?.parse().ok()?,
            params: u64::from_str_radix(parts.next()?, 16).ok()?,
            full_sync_ms: parts.next()?.parse().ok()?,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = SyncToken {
            user_tag: user_tag("a@b.c"),
            api: 'c',
            epoch: 2,
            seq: 99,
            full_sync_ms: 1_700_000_000_000,
        };
        assert_eq!(SyncToken::decode(&s.encode()), Some(s));
        let p = PageToken {
            user_tag: 7,
            api: 'p',
            epoch: 0,
            snapshot: 10,
            cursor: 3,
            skip: 1,
            params: 0xdead,
            full_sync_ms: -5,
        };
        assert_eq!(PageToken::decode(&p.encode()), Some(p));
        assert_eq!(SyncToken::decode("garbage!"), None);
        assert_eq!(SyncToken::decode(&p.encode()), None);
    }
}
