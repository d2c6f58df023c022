//! API keys as strings: `mnemo_<id>_<secret>`. The id (12 hex digits) is public and names the
//! row; the secret is 192 random bits. Only the SHA-256 of the whole key is stored, and a
//! presented key is checked by hashing it and comparing digests in constant time. A fast hash
//! is enough: the key is random, not a password, so there is nothing to guess offline.

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Every key starts with this, so a leaked one is recognisable to secret scanners.
pub const PREFIX: &str = "mnemo_";

/// A new key and its public id.
pub fn generate_key() -> Result<(String, String), String> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 24];
    rng.fill(&mut id)
        .and_then(|_| rng.fill(&mut secret))
        .map_err(|_| "the system's random source failed".to_string())?;
    let id = hex(&id);
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret);
    Ok((format!("{PREFIX}{id}_{secret}"), id))
}

/// The public id of a string shaped like a key (`None`: not a mnemo key at all).
pub fn key_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 32)
        .then_some(id)
}

/// The stored form of a key: hex SHA-256.
pub fn hash_key(key: &str) -> String {
    hex(digest(&SHA256, key.as_bytes()).as_ref())
}

/// Whether `key` hashes to `stored`, compared in constant time.
pub fn matches(key: &str, stored: &str) -> bool {
    hash_key(key).as_bytes().ct_eq(stored.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
