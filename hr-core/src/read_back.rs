//! Reading back what a target holds, so the hub can compare it with its
//! ledger: the [`TargetReader`] trait any transport may supply.
//!
//! Comparison goes in three steps, each cheaper than the next: one
//! [`Digest`] per data type; where it differs, one digest per key bucket;
//! then the entries of the differing buckets only. A transport whose
//! targets can answer each step (a REST receiver) overrides all three; one
//! that can only list what a target holds (a SCIM directory) supplies
//! [`entries`](TargetReader::entries) and lets the hub compute the digests.

use crate::digest::{Digest, DigestEntry, BUCKETS};
use crate::schema::DataType;
use async_trait::async_trait;
use std::collections::BTreeMap;

/// A target's holdings could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read what {target} holds: {cause}")]
pub struct ReadBackError {
    /// The target.
    pub target: String,
    /// Why, for a person to act on.
    pub cause: String,
}

impl ReadBackError {
    /// `target` could not be read because of `cause`.
    pub fn new(target: &str, cause: impl std::fmt::Display) -> Self {
        ReadBackError { target: target.to_string(), cause: cause.to_string() }
    }
}

/// Reads what targets hold, as the [`DigestEntry`]s of the records they
/// would report to a digest: key, version, and the hash of the content the
/// hub sent them. Reconciliation compares them with the ledger's.
#[async_trait]
pub trait TargetReader: Send + Sync {
    /// The targets this reader can read.
    fn readable_targets(&self) -> Vec<String>;

    /// The entries `target` holds of `data_type` in the key `buckets` given
    /// (see [`DigestEntry::bucket`]).
    async fn entries(&self, target: &str, data_type: DataType, buckets: &[usize]) -> Result<Vec<DigestEntry>, ReadBackError>;

    /// The digest of each of `data_types` that `target` holds; by default
    /// computed from its [`entries`](Self::entries).
    async fn digests(&self, target: &str, data_types: &[DataType]) -> Result<BTreeMap<DataType, Digest>, ReadBackError> {
        let mut out = BTreeMap::new();
        for t in data_types {
            out.insert(*t, Digest::of(&self.entries(target, *t, &ALL_BUCKETS).await?));
        }
        Ok(out)
    }

    /// [`digests`](Self::digests) as `target` reads them from everything it
    /// holds now rather than from the digests it maintains where it applies
    /// changes (see [`Sink::rescan`](crate::Sink::rescan)): what a check
    /// that must see every hand edit asks. By default the same as `digests`.
    async fn rescanned_digests(&self, target: &str, data_types: &[DataType]) -> Result<BTreeMap<DataType, Digest>, ReadBackError> {
        self.digests(target, data_types).await
    }

    /// One digest per key bucket of what `target` holds of `data_type`; by
    /// default computed from its [`entries`](Self::entries).
    async fn bucket_digests(&self, target: &str, data_type: DataType) -> Result<Vec<Digest>, ReadBackError> {
        Ok(Digest::buckets(&self.entries(target, data_type, &ALL_BUCKETS).await?))
    }
}

/// Every key bucket, to read a target's entries whole.
pub const ALL_BUCKETS: [usize; BUCKETS] = {
    let mut all = [0; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        all[i] = i;
        i += 1;
    }
    all
};
