//! Digests for reconciliation: equal digests prove equal state, content
//! included.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// How many key-hash buckets a data type is split into for reconciliation.
pub const BUCKETS: usize = 256;

/// The hash of a stored body: the first 16 bytes of its SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 16]);

impl ContentHash {
    /// The content hash of a JSON body, exactly as stored.
    pub fn of(body: &str) -> Self {
        Self::of_bytes(body.as_bytes())
    }

    /// [`of`](Self::of) for a body still in the bytes it was serialized into.
    pub(crate) fn of_bytes(body: &[u8]) -> Self {
        Self::of_sha256(Sha256::digest(body).as_slice())
    }

    fn of_sha256(full: &[u8]) -> Self {
        let mut h = [0u8; 16];
        h.copy_from_slice(&full[..16]);
        ContentHash(h)
    }

    /// 32 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A [`ContentHash`] of text written in pieces (with `write!`): equal to
/// [`ContentHash::of`] the whole text, without ever holding it. A plan's id
/// covers every change it sends, which at a million changes is a gigabyte
/// of text.
///
/// ```
/// use std::fmt::Write;
/// let mut hasher = hr_core::ContentHasher::default();
/// write!(hasher, "{}\t{}", "employee", 7).unwrap();
/// assert_eq!(hasher.finish(), hr_core::ContentHash::of("employee\t7"));
/// ```
#[derive(Debug, Default)]
pub struct ContentHasher(Sha256);

impl ContentHasher {
    /// The hash of everything written.
    pub fn finish(self) -> ContentHash {
        ContentHash::of_sha256(self.0.finalize().as_slice())
    }
}

impl fmt::Write for ContentHasher {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.update(text.as_bytes());
        Ok(())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut h = [0u8; 16];
        hex::decode_to_slice(&text, &mut h).map_err(|_| serde::de::Error::custom("a content hash is 32 hex digits"))?;
        Ok(ContentHash(h))
    }
}

/// One record as the digest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The record key.
    pub key: String,
    /// The version held.
    pub version: u64,
    /// The hash of the stored body; `None` for a tombstone.
    pub content: Option<ContentHash>,
}

impl DigestEntry {
    /// Whether this entry is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.content.is_none()
    }

    /// The key's bucket, `0..BUCKETS`.
    pub fn bucket(&self) -> usize {
        bucket_of(&self.key)
    }
}

/// The bucket of a key: the first byte of its SHA-256.
pub fn bucket_of(key: &str) -> usize {
    Sha256::digest(key.as_bytes())[0] as usize
}

/// The state of one data type in one place, reduced to a comparable value:
/// live record count, tombstone count, and an order-independent hash of
/// every entry (key, version, delete flag, content hash).
///
/// # The algorithm (for receivers written in other languages)
///
/// 1. The **content hash** of a stored record is the first 16 bytes of the
///    SHA-256 of its stored JSON body, byte for byte (a receiver stores the
///    canonical body: the record parsed and serialized again, fields in schema
///    order, no insignificant whitespace). A tombstone has no content hash.
/// 2. An **entry** is `(key, version, content hash or none)`. Its entry hash
///    is SHA-256 over: the key's length in bytes as u64 little-endian, the
///    key's UTF-8 bytes, the version as u64 little-endian, one byte `1` for a
///    tombstone or `0` for a live record, then the 16-byte content hash
///    (16 zero bytes for a tombstone).
/// 3. A **digest** is the live count, the tombstone count and the lane-wise
///    wrapping sum of the entry hashes read as four u64 little-endian lanes,
///    written as 64 hex digits (lane 0 first, each lane as 16 hex digits of
///    its numeric value). The sum does not depend on order.
/// 4. The **bucket** of a key is the first byte of SHA-256 of the key's UTF-8
///    bytes: [`BUCKETS`] buckets, each with its own digest, let the hub
///    narrow a difference down without reading the whole table.
///
/// A hand-edited body, a deleted row, an extra row or a different version
/// each change the digest.
///
/// Adding the same entry twice changes it: a set, not a multiset, must be fed in.
///
/// ```
/// use hr_core::{ContentHash, Digest};
/// let body = ContentHash::of(r#"{"id":"A-1"}"#);
/// let mut a = Digest::default();
/// a.add("A-1", 2, Some(body));
/// a.add("A-2", 1, None);
/// let mut b = Digest::default();
/// b.add("A-2", 1, None);
/// b.add("A-1", 2, Some(body));
/// assert_eq!(a, b);
/// assert_eq!((a.count, a.tombstones), (1, 1));
/// let mut edited = Digest::default();
/// edited.add("A-2", 1, None);
/// edited.add("A-1", 2, Some(ContentHash::of(r#"{"id":"A-1","x":1}"#)));
/// assert_ne!(a, edited);
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

/// An entry's hash (step 2 of [`Digest`]'s algorithm) as four lanes.
fn entry_lanes(key: &str, version: u64, content: Option<ContentHash>) -> [u64; 4] {
    let mut hasher = Sha256::new();
    hasher.update((key.len() as u64).to_le_bytes());
    hasher.update(key.as_bytes());
    hasher.update(version.to_le_bytes());
    hasher.update([content.is_none() as u8]);
    hasher.update(content.map(|c| c.0).unwrap_or_default());
    let bytes = hasher.finalize();
    let mut lanes = [0u64; 4];
    for (lane, chunk) in lanes.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *lane = u64::from_le_bytes(word);
    }
    lanes
}

/// The digest of two disjoint sets of entries is the sum of theirs: what
/// the hub sent plus what a system published is what a target holds.
///
/// ```
/// use hr_core::{ContentHash, Digest};
/// let (mut hubs, mut owners, mut held) = (Digest::default(), Digest::default(), Digest::default());
/// hubs.add("md.category:C1", 3, Some(ContentHash::of("{}")));
/// hubs.add("md.category:C2", 2, None);
/// owners.add("md.product:P1", 1, Some(ContentHash::of("{\"name\":\"p\"}")));
/// owners.add("md.product:P2", 4, None);
/// let all = [
///     ("md.category:C1", 3, Some(ContentHash::of("{}"))),
///     ("md.category:C2", 2, None),
///     ("md.product:P1", 1, Some(ContentHash::of("{\"name\":\"p\"}"))),
///     ("md.product:P2", 4, None),
/// ];
/// for (key, version, content) in all {
///     held.add(key, version, content);
/// }
/// hubs += owners;
/// assert_eq!(hubs, held);
/// assert_eq!((hubs.count, hubs.tombstones), (2, 2));
/// ```
impl std::ops::AddAssign for Digest {
    fn add_assign(&mut self, other: Digest) {
        self.count += other.count;
        self.tombstones += other.tombstones;
        for (lane, theirs) in self.hash.iter_mut().zip(other.hash) {
            *lane = lane.wrapping_add(theirs);
        }
    }
}

impl Digest {
    /// Adds one entry; `content` is `None` for a tombstone.
    pub fn add(&mut self, key: &str, version: u64, content: Option<ContentHash>) {
        let lanes = entry_lanes(key, version, content);
        for (lane, word) in self.hash.iter_mut().zip(lanes) {
            *lane = lane.wrapping_add(word);
        }
        if content.is_none() {
            self.tombstones += 1;
        } else {
            self.count += 1;
        }
    }

    /// Takes back one entry [`add`](Self::add) added: what a store that
    /// maintains its digest does when a record it holds is replaced.
    ///
    /// ```
    /// use hr_core::{ContentHash, Digest};
    /// let mut held = Digest::default();
    /// held.add("A-1", 1, Some(ContentHash::of("{}")));
    /// held.add("A-2", 1, None);
    /// held.remove("A-1", 1, Some(ContentHash::of("{}")));
    /// let mut only = Digest::default();
    /// only.add("A-2", 1, None);
    /// assert_eq!(held, only);
    /// ```
    pub fn remove(&mut self, key: &str, version: u64, content: Option<ContentHash>) {
        let lanes = entry_lanes(key, version, content);
        for (lane, word) in self.hash.iter_mut().zip(lanes) {
            *lane = lane.wrapping_sub(word);
        }
        let counted = if content.is_none() { &mut self.tombstones } else { &mut self.count };
        debug_assert!(*counted > 0, "removed an entry this digest never had");
        *counted = counted.saturating_sub(1);
    }

    /// Adds one entry.
    pub fn add_entry(&mut self, entry: &DigestEntry) {
        self.add(&entry.key, entry.version, entry.content);
    }

    /// The digest of a set of entries.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a DigestEntry>) -> Self {
        let mut digest = Digest::default();
        entries.into_iter().for_each(|e| digest.add_entry(e));
        digest
    }

    /// One digest per key bucket (see [`bucket_of`]); always [`BUCKETS`] long.
    pub fn buckets<'a>(entries: impl IntoIterator<Item = &'a DigestEntry>) -> Vec<Digest> {
        let mut buckets = vec![Digest::default(); BUCKETS];
        for e in entries {
            buckets[e.bucket()].add_entry(e);
        }
        buckets
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

    pub(super) fn serialize<S: Serializer>(lanes: &[u64; 4], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&lanes.iter().map(|l| format!("{l:016x}")).collect::<String>())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; 4], D::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed vectors, computed independently (Python's hashlib): a receiver
    /// in another language must reproduce these.
    #[test]
    fn the_documented_algorithm_gives_these_values() {
        let body = r#"{"set":"grade","code":"G1","name":"Staff","attributes":{}}"#;
        assert_eq!(ContentHash::of(body).to_hex(), "8cacd4eda54968f862a2749c2a671d64");
        let mut d = Digest::default();
        d.add("grade:G1", 3, Some(ContentHash::of(body)));
        d.add("grade:G2", 4, None);
        assert_eq!(d.hash_hex(), "bffb047b49d450cb8ca2999204c277384be9ae74da7d3d0f1a5adb5f47a494bd");
        assert_eq!((d.count, d.tombstones), (1, 1));
        assert_eq!(bucket_of("grade:G1"), 44);
    }

    #[test]
    fn digests_and_entries_travel_as_json_and_malformed_hashes_are_refused() {
        let entries = [
            DigestEntry { key: "grade:G1".into(), version: 3, content: Some(ContentHash::of("{}")) },
            DigestEntry { key: "grade:G2".into(), version: 4, content: None },
        ];
        let digest = Digest::of(&entries);
        let json = serde_json::to_string(&digest).unwrap();
        assert!(json.contains(&digest.hash_hex()), "{json}");
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        let back: Vec<DigestEntry> = serde_json::from_str(&serde_json::to_string(&entries).unwrap()).unwrap();
        assert_eq!(back, entries);
        assert!(!back[0].is_tombstone() && back[1].is_tombstone());
        assert_eq!((back[0].bucket(), back[1].bucket()), (bucket_of("grade:G1"), bucket_of("grade:G2")));
        assert_ne!(back[0].bucket(), back[1].bucket(), "the test keys fall in different buckets");
        for bad in ["00", &"g".repeat(64), &"é".repeat(32)] {
            let text = format!(r#"{{"count":0,"tombstones":0,"hash":"{bad}"}}"#);
            assert!(serde_json::from_str::<Digest>(&text).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ContentHash>(r#""xyz""#).is_err());
        assert!(format!("{digest:?}").contains(&digest.hash_hex()));
        assert_eq!(format!("{:?}", ContentHash::of("{}")), ContentHash::of("{}").to_hex());
    }

    #[test]
    fn every_part_of_an_entry_changes_the_digest() {
        let c = Some(ContentHash::of("{}"));
        let base = Digest::of(&[DigestEntry { key: "k".into(), version: 1, content: c }]);
        for other in [
            DigestEntry { key: "j".into(), version: 1, content: c },
            DigestEntry { key: "k".into(), version: 2, content: c },
            DigestEntry { key: "k".into(), version: 1, content: None },
            DigestEntry { key: "k".into(), version: 1, content: Some(ContentHash::of("{ }")) },
        ] {
            assert_ne!(Digest::of(&[other]), base);
        }
    }

    #[test]
    fn bucket_digests_add_up_to_the_same_entries() {
        let entries: Vec<DigestEntry> =
            (0..500).map(|i| DigestEntry { key: format!("A-{i}"), version: i, content: (i % 7 != 0).then(|| ContentHash::of(&i.to_string())) }).collect();
        let buckets = Digest::buckets(&entries);
        assert_eq!(buckets.len(), BUCKETS);
        assert_eq!(buckets.iter().map(|b| b.count + b.tombstones).sum::<u64>(), 500);
        let mut moved = entries.clone();
        moved[3].version += 1;
        let differing: Vec<usize> = Digest::buckets(&moved).iter().zip(&buckets).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
        assert_eq!(differing, vec![entries[3].bucket()]);
    }
}
