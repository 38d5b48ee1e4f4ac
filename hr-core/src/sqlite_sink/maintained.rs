//! Bucket digests an [`SqliteSink`](super::SqliteSink) keeps up to date
//! where it applies changes, so a comparison does not read and hash every
//! body it holds.
//!
//! A data type is maintained from its first full scan on: each change
//! applied afterwards takes its key's old entry out of its bucket and adds
//! the new one. Three things send it back to a full scan:
//!
//! - another connection committed to the file (a hand edit with `sqlite3`,
//!   another process): SQLite's `PRAGMA data_version` changes;
//! - the last full scan is older than the sink's full-scan interval, which
//!   catches what SQLite cannot report (a file changed under it);
//! - a caller asks for one ([`Sink::rescan`](crate::Sink::rescan)), as
//!   `hr-sync hub --check-only` does.

use crate::digest::{bucket_of, ContentHash, Digest, DigestEntry};
use crate::schema::DataType;
use compact_str::CompactString;
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

/// One data type as of its last full scan plus every change applied since.
struct MaintainedType {
    /// Each key's entry (version, content hash), to take it out of its
    /// bucket when a change replaces it.
    held: FxHashMap<CompactString, (u64, Option<ContentHash>)>,
    buckets: Vec<Digest>,
    scanned_at: Instant,
}

/// The maintained data types of one store.
pub(super) struct MaintainedDigests {
    /// The connection's `PRAGMA data_version` the maintained types are in
    /// step with: it changes when another connection commits.
    data_version: Option<i64>,
    types: FxHashMap<DataType, MaintainedType>,
    full_scan_every: Duration,
}

impl MaintainedDigests {
    pub(super) fn new(full_scan_every: Duration) -> Self {
        MaintainedDigests { data_version: None, types: FxHashMap::default(), full_scan_every }
    }

    pub(super) fn set_full_scan_every(&mut self, every: Duration) {
        self.full_scan_every = every;
    }

    /// The bucket digests of `data_type`, if it is maintained, nothing else
    /// wrote to the store since (`data_version` is the connection's now) and
    /// its last full scan is recent enough.
    pub(super) fn current(&mut self, data_type: DataType, data_version: i64) -> Option<Vec<Digest>> {
        self.follow(data_version);
        let maintained = self.types.get(&data_type)?;
        if maintained.scanned_at.elapsed() >= self.full_scan_every {
            self.types.remove(&data_type);
            return None;
        }
        Some(maintained.buckets.clone())
    }

    /// Maintains `data_type` from now on, starting from a full scan's
    /// `entries`, read after `data_version` was; returns its bucket digests.
    pub(super) fn scanned(&mut self, data_type: DataType, data_version: i64, entries: Vec<DigestEntry>) -> Vec<Digest> {
        self.follow(data_version);
        let buckets = Digest::buckets(&entries);
        let held = entries.into_iter().map(|e| (CompactString::from(e.key), (e.version, e.content))).collect();
        self.types.insert(data_type, MaintainedType { held, buckets: buckets.clone(), scanned_at: Instant::now() });
        buckets
    }

    /// Whether changes of `data_type` must be recorded with [`applied`](Self::applied).
    pub(super) fn maintains(&self, data_type: DataType) -> bool {
        self.types.contains_key(&data_type)
    }

    /// Records a change the store committed: `key` now holds `version`
    /// with `content` (`None`: a tombstone).
    pub(super) fn applied(&mut self, data_type: DataType, key: &str, version: u64, content: Option<ContentHash>) {
        let Some(maintained) = self.types.get_mut(&data_type) else { return };
        let bucket = &mut maintained.buckets[bucket_of(key)];
        if let Some((old_version, old_content)) = maintained.held.insert(CompactString::from(key), (version, content)) {
            bucket.remove(key, old_version, old_content);
        }
        bucket.add(key, version, content);
    }

    /// Stops maintaining `data_type` (written other than by applying
    /// changes) until its next full scan.
    pub(super) fn forget(&mut self, data_type: DataType) {
        self.types.remove(&data_type);
    }

    /// Stops maintaining every type until its next full scan.
    pub(super) fn forget_all(&mut self) {
        self.types.clear();
    }

    /// Forgets every type if another connection wrote since they were in step.
    fn follow(&mut self, data_version: i64) {
        if self.data_version != Some(data_version) {
            self.types.clear();
            self.data_version = Some(data_version);
        }
    }
}
