//! Digests for reconciliation: equal digests prove equal state.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// The state of one data type in one place, reduced to a comparable value:
/// live record count, tombstone count, and an order-independent hash of
/// every `(key, version, deleted)`.
///
/// The hash is the lane-wise wrapping sum of SHA-256 digests, so it does not
/// depend on the order entries are added in, and adding the same entry twice
/// changes it (a set, not a multiset, must be fed in).
///
/// ```
/// use hr_core::Digest;
/// let mut a = Digest::default();
/// a.add("A-1", 2, false);
/// a.add("A-2", 1, true);
/// let mut b = Digest::default();
/// b.add("A-2", 1, true);
/// b.add("A-1", 2, false);
/// assert_eq!(a, b);
/// assert_eq!((a.count, a.tombstones), (1, 1));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    /// Live (not deleted) records.
    pub count: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Order-independent hash, as four 64-bit lanes.
    #[serde(with = "hex_lanes")]
    pub hash: [u64; 4],
}

impl Digest {
    /// Adds one entry.
    pub fn add(&mut self, key: &str, version: u64, deleted: bool) {
        let mut hasher = Sha256::new();
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update(version.to_le_bytes());
        hasher.update([deleted as u8]);
        let bytes = hasher.finalize();
        for (lane, chunk) in self.hash.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_le_bytes(word));
        }
        if deleted {
            self.tombstones += 1;
        } else {
            self.count += 1;
        }
    }

    /// The hash as 64 hex digits.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|l| format!("{l:016x}")).collect()
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest {{ count: {}, tombstones: {}, hash: {} }}", self.count, self.tombstones, self.hash_hex())
    }
}

mod hex_lanes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(lanes: &[u64; 4], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&lanes.iter().map(|l| format!("{l:016x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; 4], D::Error> {
        let text = String::deserialize(d)?;
        if text.len() != 64 || !text.is_ascii() {
            return Err(serde::de::Error::custom("digest hash must be 64 hex digits"));
        }
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = u64::from_str_radix(&text[i * 16..(i + 1) * 16], 16).map_err(serde::de::Error::custom)?;
        }
        Ok(lanes)
    }
}
