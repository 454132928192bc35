//! Who may join an executor: the per-executor key, the mutual HMAC-SHA256 challenge that a
//! remote worker and its parent run before any frame, and the fingerprint of this build that
//! travels with it.
//!
//! ```text
//!   worker → parent   "WPR1", u64 launch id, 32-byte nonce N_w, u64 build fingerprint
//!   parent → worker   32-byte nonce N_p, HMAC(key, "workpool parent" | launch | N_w | N_p | print)
//!   worker → parent   HMAC(key, "workpool worker" | launch | N_w | N_p | print)
//! ```
//!
//! Each side checks the other's tag (in constant time, by `hmac_sha256`'s `finalize_verify`) before it
//! trusts anything: the worker proves it was given the key, and the parent proves it too, so a
//! worker never serves a stranger. Both nonces are fresh, so no answer can be replayed, and the
//! two labels differ, so neither side's tag is ever a valid answer for the other. What this
//! does not give: secrecy or integrity of the frames that follow (see README, "Trust").

use hmac_sha256::{Hash, HMAC};
use std::io::{self, Read, Write};
use std::sync::OnceLock;

/// Bytes in a key and in a nonce.
pub(crate) const KEY_LEN: usize = 32;
const MAGIC: &[u8; 4] = b"WPR1";
/// The worker's opening message: magic, launch id, nonce, fingerprint.
const OPENING: usize = 4 + 8 + KEY_LEN + 8;

pub(crate) type Key = [u8; KEY_LEN];

/// A fresh random key (or nonce), from the operating system's generator.
pub(crate) fn random() -> io::Result<Key> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| io::Error::other(format!("no random bytes from the system: {e}")))?;
    Ok(key)
}

/// The key as the hex line a launcher carries.
pub(crate) fn to_hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key from its hex line.
pub(crate) fn from_hex(text: &str) -> Option<Key> {
    let text = text.trim();
    if text.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

fn tag(key: &Key, label: &[u8], launch: u64, worker_nonce: &Key, parent_nonce: &Key, print: u64) -> HMAC {
    let mut mac = HMAC::new(key);
    mac.update(label);
    mac.update(launch.to_le_bytes());
    mac.update(worker_nonce);
    mac.update(parent_nonce);
    mac.update(print.to_le_bytes());
    mac
}

/// What the parent learned from a worker that passed the challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    pub(crate) launch: u64,
    pub(crate) print: u64,
}

/// The parent's side of the challenge; an error means: drop the connection.
pub(crate) fn parent_side(stream: &mut (impl Read + Write), key: &Key) -> io::Result<Joined> {
    let mut opening = [0u8; OPENING];
    stream.read_exact(&mut opening)?;
    if &opening[..4] != MAGIC {
        return Err(io::Error::other("not a workpool worker (wrong greeting)"));
    }
    let launch = u64::from_le_bytes(opening[4..12].try_into().expect("8 bytes"));
    let worker_nonce: Key = opening[12..12 + KEY_LEN].try_into().expect("32 bytes");
    let print = u64::from_le_bytes(opening[12 + KEY_LEN..].try_into().expect("8 bytes"));
    let parent_nonce = random()?;
    let ours = tag(key, b"workpool parent", launch, &worker_nonce, &parent_nonce, print).finalize();
    let mut answer = Vec::with_capacity(2 * KEY_LEN);
    answer.extend_from_slice(&parent_nonce);
    answer.extend_from_slice(&ours);
    stream.write_all(&answer)?;
    let mut theirs = [0u8; KEY_LEN];
    stream.read_exact(&mut theirs)?;
    if !tag(key, b"workpool worker", launch, &worker_nonce, &parent_nonce, print).finalize_verify(&theirs) {
        return Err(io::Error::other("the worker does not know this executor's key"));
    }
    Ok(Joined { launch, print })
}

/// The worker's side of the challenge; an error means: do not serve this peer.
pub(crate) fn worker_side(stream: &mut (impl Read + Write), key: &Key, launch: u64, print: u64) -> io::Result<()> {
    let worker_nonce = random()?;
    let mut opening = Vec::with_capacity(OPENING);
    opening.extend_from_slice(MAGIC);
    opening.extend_from_slice(&launch.to_le_bytes());
    opening.extend_from_slice(&worker_nonce);
    opening.extend_from_slice(&print.to_le_bytes());
    stream.write_all(&opening)?;
    let mut answer = [0u8; 2 * KEY_LEN];
    stream.read_exact(&mut answer)?;
    let parent_nonce: Key = answer[..KEY_LEN].try_into().expect("32 bytes");
    let theirs: Key = answer[KEY_LEN..].try_into().expect("32 bytes");
    if !tag(key, b"workpool parent", launch, &worker_nonce, &parent_nonce, print).finalize_verify(&theirs) {
        return Err(io::Error::other("the parent does not know the key this worker was given"));
    }
    let ours = tag(key, b"workpool worker", launch, &worker_nonce, &parent_nonce, print).finalize();
    stream.write_all(&ours)
}

/// A fingerprint of this build that does not depend on where the binary lies: SHA-256 of the
/// executable's bytes, the protocol version and the registered task names (the local
/// fingerprint of `marker.rs` uses the file's inode, which differs on every host).
pub(crate) fn build_print() -> u64 {
    static PRINT: OnceLock<u64> = OnceLock::new();
    *PRINT.get_or_init(|| {
        let mut hash = Hash::new();
        hash.update(super::super::wire::PROTOCOL_VERSION.to_le_bytes());
        hash.update(env!("CARGO_PKG_VERSION").as_bytes());
        if let Ok(mut file) = std::fs::File::open("/proc/self/exe") {
            let mut chunk = vec![0u8; 1 << 20];
            while let Ok(n) = file.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                hash.update(&chunk[..n]);
            }
        }
        for name in crate::task::registered_names() {
            hash.update(b"/");
            hash.update(name.as_bytes());
        }
        u64::from_le_bytes(hash.finalize()[..8].try_into().expect("8 bytes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn run(parent_key: Key, worker_key: Key) -> (io::Result<Joined>, io::Result<()>) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let worker = std::thread::spawn(move || {
            let r = worker_side(&mut b, &worker_key, 7, 99);
            drop(b);
            r
        });
        let parent = parent_side(&mut a, &parent_key);
        drop(a);
        (parent, worker.join().unwrap())
    }

    #[test]
    fn the_same_key_joins_both_ways() {
        let key = random().unwrap();
        let (parent, worker) = run(key, key);
        assert_eq!(parent.unwrap(), Joined { launch: 7, print: 99 });
        worker.unwrap();
    }

    #[test]
    fn a_wrong_key_is_refused_by_both_sides() {
        let (parent, worker) = run(random().unwrap(), random().unwrap());
        assert!(worker.unwrap_err().to_string().contains("parent does not know"));
        assert!(parent.is_err(), "the parent must not accept a worker that refused it");
    }

    /// The crate computes the HMAC-SHA256 of RFC 4231 (its test case 2), so a worker built
    /// elsewhere answers the same tags.
    #[test]
    fn tags_are_rfc_4231_hmac_sha256() {
        let tag = HMAC::mac(b"what do ya want for nothing?", b"Jefe");
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let key = random().unwrap();
        assert_eq!(from_hex(&format!("{}\n", to_hex(&key))), Some(key));
        assert_eq!(from_hex("abc"), None);
        assert_ne!(random().unwrap(), key);
    }
}
