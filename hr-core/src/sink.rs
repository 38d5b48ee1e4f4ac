//! The receiving side: a [`Sink`] applies changes to a target system's store.

use crate::digest::{ContentHash, Digest, DigestEntry};
use crate::envelope::{ChangeEnvelope, EnvelopeError, Operation};
use crate::routing::RecordScope;
use crate::schema::DataType;
use async_trait::async_trait;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Changes newer than what was held, now stored.
    pub applied: usize,
    /// Changes at or below the held version, ignored (duplicates, late arrivals).
    pub stale: usize,
    /// Changes outside the target's [`RecordScope`], not stored (see [`ScopedSink`]).
    pub out_of_scope: usize,
    /// Changes that carried fields the target's [`FieldScope`](crate::FieldScope)
    /// omits; stored without them (see [`ScopedSink`]).
    pub fields_dropped: usize,
}

impl std::ops::AddAssign for ApplyOutcome {
    fn add_assign(&mut self, rhs: Self) {
        self.applied += rhs.applied;
        self.stale += rhs.stale;
        self.out_of_scope += rhs.out_of_scope;
        self.fields_dropped += rhs.fields_dropped;
    }
}

/// Why a sink did not apply a batch. Nothing of a failed batch is applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The envelope at `index` breaks the schema; retrying cannot help.
    #[error("change {index} of the batch is invalid: {source}")]
    Invalid {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        #[source]
        source: EnvelopeError,
    },
    /// The store could not be reached or written; retrying may help.
    #[error("sink storage unavailable: {0}")]
    Unavailable(String),
    /// The sink does not do what was asked (for example keep dead letters).
    #[error("this sink cannot {0}")]
    Unsupported(&'static str),
}

/// A record a transport could neither apply nor hand to its dead-letter
/// destination (the topic refuses it, even without its payload), kept in
/// the system's own store instead, so it is not lost and the records after
/// it still arrive ([`Sink::keep_letter`]).
#[derive(Clone, PartialEq, Eq)]
pub struct KeptLetter {
    /// Where it came from (`topic/partition/offset`).
    pub source: String,
    /// Its key, if it had one.
    pub key: Option<String>,
    /// Why it could not be applied.
    pub reason: String,
    /// The record as it came.
    pub payload: Vec<u8>,
    /// When it was kept.
    pub kept_at: chrono::DateTime<chrono::Utc>,
}

// The payload may hold any field of a record: Debug says only how long it is.
impl std::fmt::Debug for KeptLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptLetter")
            .field("source", &self.source)
            .field("reason", &self.reason)
            .field("payload_bytes", &self.payload.len())
            .field("kept_at", &self.kept_at)
            .finish_non_exhaustive()
    }
}

impl SinkError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Unavailable(_))
    }
}

/// A target system's store of HR records.
///
/// Contract, for every implementation: a change is applied only when its
/// version is newer than the one held for its key; deletes leave tombstones
/// (so a late older upsert never resurrects a record); a batch is applied
/// atomically or not at all, and a batch holding an envelope that fails
/// [`ChangeEnvelope::validate`] is refused whole with [`SinkError::Invalid`]
/// naming its index ([`validate_batch`] does that). What is stored is the
/// canonical body ([`ChangeEnvelope::canonical_payload`]), never the bytes as
/// received, and [`entries`](Sink::entries) hashes what is stored, so a row
/// edited in the store shows in the digest. Transports rely on it:
/// the REST receiver answers 400 and the Kafka subscriber dead-letters that
/// record. Duplicates and reordering therefore never change
/// the final state, and [`digest`](Sink::digest) equals the hub's once every
/// change arrived.
///
/// ```
/// use hr_core::{ChangeEnvelope, DataType, MasterData, MemorySink, Sink};
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let sink = MemorySink::default();
/// let md = MasterData { set: "grade".into(), code: "G1".into(), name: "Staff".into(), attributes: Default::default() };
/// let v1 = ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1, "hr", &md).unwrap();
/// let v2 = ChangeEnvelope::delete(DataType::MasterData, md.key(), 2, "hr");
/// sink.apply(&[v2.clone(), v1.clone(), v2]).await.unwrap();
/// let digest = sink.digest(DataType::MasterData).await.unwrap();
/// assert_eq!((digest.count, digest.tombstones), (0, 1));
/// # }) }
/// ```
#[async_trait]
pub trait Sink: Send + Sync {
    /// Applies a batch atomically under the version rule.
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError>;
    /// Every record held for one data type, tombstones included, with the
    /// hash of its stored body as it is now (read back, not remembered).
    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError>;

    /// The digest of what the sink holds for one data type: the sum of its
    /// [`bucket_digests`](Self::bucket_digests).
    async fn digest(&self, data_type: DataType) -> Result<Digest, SinkError> {
        let mut digest = Digest::default();
        self.bucket_digests(data_type).await?.into_iter().for_each(|bucket| digest += bucket);
        Ok(digest)
    }

    /// One digest per key bucket ([`BUCKETS`](crate::BUCKETS) of them) of
    /// what the sink holds for one data type; by default computed from its
    /// [`entries`](Self::entries). A sink may answer from digests it
    /// maintains where it applies changes instead of reading and hashing
    /// every body ([`SqliteSink`](crate::SqliteSink) does), provided a change
    /// made to its store by other means shows at the latest after
    /// [`rescan`](Self::rescan).
    async fn bucket_digests(&self, data_type: DataType) -> Result<Vec<Digest>, SinkError> {
        Ok(Digest::buckets(&self.entries(data_type).await?))
    }

    /// Makes the next digests read and hash everything the sink holds now
    /// rather than answer from what it maintains: for a check that must see
    /// a store edited behind the sink's back even where the sink could not
    /// tell. Sinks that maintain nothing keep this default, which does nothing.
    async fn rescan(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Keeps a record its transport could neither apply nor dead-letter
    /// (see [`KeptLetter`]). Sinks that cannot answer
    /// [`SinkError::Unsupported`], and the transport keeps trying to
    /// dead-letter it.
    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        let _ = letter;
        Err(SinkError::Unsupported("keep dead letters"))
    }
}

/// Validates every change of a batch before anything is applied and returns
/// the body to store for each (`None` for deletes).
pub(crate) fn canonical_bodies(batch: &[ChangeEnvelope]) -> Result<Vec<Option<String>>, SinkError> {
    batch.iter().enumerate().map(|(index, c)| c.canonical_payload().map_err(|source| SinkError::Invalid { index, source })).collect()
}

/// Validates every change of a batch before anything is applied.
pub fn validate_batch(batch: &[ChangeEnvelope]) -> Result<(), SinkError> {
    canonical_bodies(batch).map(drop)
}

/// One record as a sink holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Version held.
    pub version: u64,
    /// Whether this is a tombstone.
    pub deleted: bool,
    /// The payload JSON; `None` for tombstones.
    pub body: Option<String>,
}

impl StoredRecord {
    /// This record as a digest entry under `key`.
    pub fn entry(&self, key: &str) -> DigestEntry {
        DigestEntry { key: key.to_string(), version: self.version, content: content_of(self.deleted, self.body.as_deref()) }
    }
}

/// The content hash of a stored row: none for a tombstone, else the hash of
/// its body (an empty body, which only a hand edit makes, still hashes).
pub(crate) fn content_of(deleted: bool, body: Option<&str>) -> Option<ContentHash> {
    (!deleted).then(|| ContentHash::of(body.unwrap_or("")))
}

impl std::fmt::Debug for StoredRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredRecord").field("version", &self.version).field("deleted", &self.deleted).finish_non_exhaustive()
    }
}

/// A sink in memory: for tests, and for embedding where the caller persists.
#[derive(Default)]
pub struct MemorySink {
    records: Mutex<BTreeMap<(DataType, String), StoredRecord>>,
    letters: Mutex<Vec<KeptLetter>>,
}

impl MemorySink {
    /// The record held for a key.
    pub fn get(&self, data_type: DataType, key: &str) -> Option<StoredRecord> {
        self.lock().get(&(data_type, key.to_string())).cloned()
    }

    /// Everything held, in key order.
    pub fn snapshot(&self) -> BTreeMap<(DataType, String), StoredRecord> {
        self.lock().clone()
    }

    /// Replaces or removes a record behind the version rule's back: what a
    /// person editing the store by hand does (tests of drift repair).
    pub fn tamper(&self, data_type: DataType, key: &str, record: Option<StoredRecord>) {
        match record {
            Some(r) => self.lock().insert((data_type, key.to_string()), r),
            None => self.lock().remove(&(data_type, key.to_string())),
        };
    }

    /// The records its transport kept here instead of dead-lettering them.
    pub fn kept_letters(&self) -> Vec<KeptLetter> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(DataType, String), StoredRecord>> {
        // A panic while holding the lock cannot leave a half-applied batch (see apply), so poisoning is safe to ignore.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        let bodies = canonical_bodies(batch)?;
        let mut records = self.lock();
        let mut outcome = ApplyOutcome::default();
        for (change, body) in batch.iter().zip(bodies) {
            let key = (change.data_type, change.key.clone());
            let newer = records.get(&key).is_none_or(|held| change.version > held.version);
            if newer {
                records.insert(key, StoredRecord { version: change.version, deleted: change.op == Operation::Delete, body });
                outcome.applied += 1;
            } else {
                outcome.stale += 1;
            }
        }
        Ok(outcome)
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        Ok(self.lock().iter().filter(|((t, _), _)| *t == data_type).map(|((_, key), r)| r.entry(key)).collect())
    }

    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        self.letters.lock().unwrap_or_else(|p| p.into_inner()).push(letter.clone());
        Ok(())
    }
}

/// A shared sink is a sink, so adapters such as [`ScopedSink`] can wrap one
/// that other parts of a system also hold.
#[async_trait]
impl<S: Sink + ?Sized> Sink for std::sync::Arc<S> {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        (**self).apply(batch).await
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        (**self).entries(data_type).await
    }

    async fn digest(&self, data_type: DataType) -> Result<Digest, SinkError> {
        (**self).digest(data_type).await
    }

    async fn bucket_digests(&self, data_type: DataType) -> Result<Vec<Digest>, SinkError> {
        (**self).bucket_digests(data_type).await
    }

    async fn rescan(&self) -> Result<(), SinkError> {
        (**self).rescan().await
    }

    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        (**self).keep_letter(letter).await
    }
}

/// A sink that stores only what its target may hold: changes outside its
/// [`RecordScope`] (a grant for another system) are counted as
/// `out_of_scope` and never reach the wrapped sink, and fields the scope
/// omits are dropped before they do (counted as `fields_dropped`: a sender
/// whose configuration differs from the target's). Wraps any sink, for a
/// transport that cannot address records to one target (every consumer
/// group reads a whole Kafka topic).
///
/// ```
/// use hr_core::{ChangeEnvelope, DataType, MemorySink, PermissionGrant, RecordScope, ScopedSink, Sink};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let erp = ScopedSink::new(MemorySink::default(), RecordScope::new("erp", false));
/// let grant = |system: &str| PermissionGrant {
///     employee: "A-1".into(), system: system.into(), role: "viewer".into(),
///     granted: true, expires: None, at: "2026-01-01T00:00:00Z".parse().unwrap(),
/// };
/// let batch = [ChangeEnvelope::of(&grant("erp"), 1, "hub").unwrap(), ChangeEnvelope::of(&grant("payroll"), 1, "hub").unwrap()];
/// let outcome = erp.apply(&batch).await.unwrap();
/// assert_eq!((outcome.applied, outcome.out_of_scope), (1, 1));
/// assert_eq!(erp.digest(DataType::Permission).await.unwrap().count, 1);
/// # });
/// ```
pub struct ScopedSink<S> {
    inner: S,
    scope: RecordScope,
}

impl<S: Sink> ScopedSink<S> {
    /// Wraps `inner`, which then receives only what `scope` admits.
    pub fn new(inner: S, scope: RecordScope) -> Self {
        ScopedSink { inner, scope }
    }

    /// The wrapped sink.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S> std::fmt::Debug for ScopedSink<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedSink").field("scope", &self.scope).finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: Sink> Sink for ScopedSink<S> {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        let narrowed = |c: &ChangeEnvelope| !self.scope.fields().omitted(c.data_type).is_empty();
        if batch.iter().all(|c| self.scope.admits(c.data_type, &c.key) && !narrowed(c)) {
            return self.inner.apply(batch).await;
        }
        // The wrapped sink validates what it is given; a change outside the scope never gets
        // there, so it is validated here: a bad one still refuses the batch.
        for (index, change) in batch.iter().enumerate().filter(|(_, c)| !self.scope.admits(c.data_type, &c.key)) {
            change.canonical_payload().map_err(|source| SinkError::Invalid { index, source })?;
        }
        // Each change passed on, and where it is in `batch`.
        let mut mine: Vec<Cow<'_, ChangeEnvelope>> = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        let mut fields_dropped = 0;
        for (index, change) in batch.iter().enumerate().filter(|(_, c)| self.scope.admits(c.data_type, &c.key)) {
            positions.push(index);
            let carried = self.scope.fields().carried(change);
            // Without a value in an omitted field (a sender with the same scope) the change is stored as it came.
            if carried.is_empty() {
                mine.push(Cow::Borrowed(change));
                continue;
            }
            tracing::warn!(target = self.scope.target(), data_type = %change.data_type, fields = %carried.join(","), "received fields this system must not hold; stored without them (the sender's field scope differs from this system's)");
            fields_dropped += 1;
            mine.push(self.scope.fields().apply(change).map_err(|source| SinkError::Invalid { index, source })?);
        }
        let out_of_scope = batch.len() - mine.len();
        let applied = match (mine.is_empty(), out_of_scope + fields_dropped) {
            (true, _) => Ok(ApplyOutcome::default()),
            // Nothing left out or rewritten: the batch itself, without a copy of each change.
            (false, 0) => self.inner.apply(batch).await,
            (false, _) => self.inner.apply(&mine.into_iter().map(Cow::into_owned).collect::<Vec<_>>()).await,
        };
        let mut outcome = applied.map_err(|e| match e {
            SinkError::Invalid { index, source } => SinkError::Invalid { index: positions.get(index).copied().unwrap_or(index), source },
            other => other,
        })?;
        outcome.out_of_scope += out_of_scope;
        outcome.fields_dropped += fields_dropped;
        Ok(outcome)
    }

    /// Only what the scope admits: what else the wrapped sink may hold is
    /// not this target's to hold.
    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        let mut entries = self.inner.entries(data_type).await?;
        if !self.scope.admits_all(data_type) {
            entries.retain(|e| self.scope.admits(data_type, &e.key));
        }
        Ok(entries)
    }

    /// The wrapped sink's, where the scope admits every key of the type
    /// (the sink then holds none it must not); otherwise computed from
    /// [`entries`](Sink::entries), which leaves out what the scope does not admit.
    async fn bucket_digests(&self, data_type: DataType) -> Result<Vec<Digest>, SinkError> {
        if self.scope.admits_all(data_type) {
            return self.inner.bucket_digests(data_type).await;
        }
        Ok(Digest::buckets(&self.entries(data_type).await?))
    }

    async fn rescan(&self) -> Result<(), SinkError> {
        self.inner.rescan().await
    }

    /// A letter holding a change outside the scope is kept without its
    /// payload: what the target may not hold, it does not hold as a letter either.
    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        match ChangeEnvelope::from_json(&letter.payload) {
            Ok(change) if !self.scope.admits(change.data_type, &change.key) || !self.scope.fields().omitted(change.data_type).is_empty() => {
                self.inner.keep_letter(&KeptLetter { payload: vec![], ..letter.clone() }).await
            }
            _ => self.inner.keep_letter(letter).await,
        }
    }
}
