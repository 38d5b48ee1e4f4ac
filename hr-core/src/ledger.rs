//! The hub's ledger: key -> version and content hash per data type, which
//! turns periodic full loads into deltas.

use crate::digest::Digest;
use crate::envelope::ChangeEnvelope;
use crate::merge::MergedState;
use crate::schema::DataType;
use rusqlite::{OptionalExtension, params, Connection};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use std::path::Path;

/// Default largest share of a data type's live records one run may delete.
pub const DEFAULT_MAX_DELETE_SHARE: f64 = 0.2;

/// Why the ledger could not plan or record a run.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger database {path}: {source}")]
    Storage {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The new state is not sorted by key (a caller bug).
    #[error("records of {data_type} must come sorted by key; {key:?} came after a greater key")]
    Unsorted {
        /// The data type.
        data_type: DataType,
        /// The out-of-order key.
        key: String,
    },
    /// A record could not be serialized.
    #[error("a {data_type} record could not be serialized: {source}")]
    Encode {
        /// The data type.
        data_type: DataType,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The run would delete too much: probably a truncated export.
    #[error(
        "refusing to delete {deletes} of {live} {data_type} records ({:.1}% > the {:.1}% limit); \
         check the input for a truncated export, or force the run if the departures are real",
        100.0 * *.deletes as f64 / (*.live).max(1) as f64,
        100.0 * .max_share
    )]
    DeleteGuard {
        /// The data type.
        data_type: DataType,
        /// Deletes the run would make.
        deletes: u64,
        /// Live records in the ledger.
        live: u64,
        /// The configured limit.
        max_share: f64,
    },
}

/// The changes of one data type that one run must send.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Envelopes to send, in key order.
    pub changes: Vec<ChangeEnvelope>,
    hashes: Vec<Option<[u8; 16]>>,
    /// Records new to the ledger (or re-created after a delete).
    pub created: u64,
    /// Records whose content changed.
    pub updated: u64,
    /// Records that vanished.
    pub deleted: u64,
    /// Records identical to the ledger's.
    pub unchanged: u64,
}

/// The ledger, in an SQLite file.
///
/// ```
/// use hr_core::{DataType, Ledger, MasterData};
/// let mut ledger = Ledger::in_memory().unwrap();
/// let md = MasterData { set: "grade".into(), code: "G1".into(), name: "Staff".into(), attributes: Default::default() };
/// let payload = serde_json::value::to_raw_value(&md).unwrap();
/// let first = ledger.plan(DataType::MasterData, [(md.key(), payload.clone())], "hr", false).unwrap();
/// assert_eq!(first.created, 1);
/// ledger.commit(DataType::MasterData, &first).unwrap();
/// let again = ledger.plan(DataType::MasterData, [(md.key(), payload)], "hr", false).unwrap();
/// assert!(again.changes.is_empty());
/// ```
pub struct Ledger {
    conn: Connection,
    path: String,
    max_delete_share: f64,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).field("max_delete_share", &self.max_delete_share).finish()
    }
}

fn content_hash(json: &str) -> [u8; 16] {
    let full = Sha256::digest(json.as_bytes());
    let mut h = [0u8; 16];
    h.copy_from_slice(&full[..16]);
    h
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let shown = path.as_ref().display().to_string();
        let conn = Connection::open(path.as_ref()).map_err(|source| LedgerError::Storage { path: shown.clone(), source })?;
        Self::init(conn, shown)
    }

    /// A ledger that lives only in memory.
    pub fn in_memory() -> Result<Self, LedgerError> {
        let conn = Connection::open_in_memory().map_err(|source| LedgerError::Storage { path: ":memory:".into(), source })?;
        Self::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, path: String) -> Result<Self, LedgerError> {
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS ledger (
               data_type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
               hash BLOB, deleted INTEGER NOT NULL, PRIMARY KEY (data_type, key)) WITHOUT ROWID;",
        )
        .map_err(|source| LedgerError::Storage { path: path.clone(), source })?;
        Ok(Ledger { conn, path, max_delete_share: DEFAULT_MAX_DELETE_SHARE })
    }

    /// Sets the delete guard's limit (a share between 0 and 1).
    pub fn with_max_delete_share(mut self, share: f64) -> Self {
        self.max_delete_share = share.clamp(0.0, 1.0);
        self
    }

    fn storage(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Storage { path: self.path.clone(), source }
    }

    /// Compares the new full state of a data type (sorted by key) with the
    /// ledger and returns only what must travel: new and changed records as
    /// upserts with the next version, vanished ones as deletes. Nothing is
    /// recorded until [`commit`](Self::commit), so a failed propagation is
    /// simply planned again.
    ///
    /// Memory: one pass over both sides in key order; only the delta is kept.
    pub fn plan<K: AsRef<str>>(
        &self,
        data_type: DataType,
        records: impl IntoIterator<Item = (K, Box<RawValue>)>,
        origin: &str,
        force: bool,
    ) -> Result<Delta, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, version, hash, deleted FROM ledger WHERE data_type = ?1 ORDER BY key")
            .map_err(self.storage())?;
        let mut held = stmt.query([data_type.as_str()]).map_err(self.storage())?;
        let mut next_held = || -> Result<Option<(String, u64, Option<[u8; 16]>, bool)>, LedgerError> {
            match held.next().map_err(self.storage())? {
                None => Ok(None),
                Some(row) => {
                    let hash: Option<Vec<u8>> = row.get(2).map_err(self.storage())?;
                    Ok(Some((
                        row.get(0).map_err(self.storage())?,
                        row.get::<_, i64>(1).map_err(self.storage())? as u64,
                        hash.and_then(|h| h.try_into().ok()),
                        row.get::<_, i64>(3).map_err(self.storage())? != 0,
                    )))
                }
            }
        };
        let mut delta = Delta::default();
        let mut live: u64 = 0;
        let mut current = next_held()?;
        let mut last_key: Option<String> = None;
        let vanish = |delta: &mut Delta, key: String, version: u64| {
            delta.changes.push(ChangeEnvelope::delete(data_type, key, version + 1, origin));
            delta.hashes.push(None);
            delta.deleted += 1;
        };
        for (key, payload) in records {
            let key = key.as_ref();
            if last_key.as_deref().is_some_and(|last| last >= key) {
                return Err(LedgerError::Unsorted { data_type, key: key.to_string() });
            }
            // Held keys before this one have vanished from the source.
            while current.as_ref().is_some_and(|(held_key, ..)| held_key.as_str() < key) {
                if let Some((held_key, version, _, false)) = current.take() {
                    live += 1;
                    vanish(&mut delta, held_key, version);
                }
                current = next_held()?;
            }
            last_key = Some(key.to_string());
            let hash = content_hash(payload.get());
            let prior = match &current {
                Some((held_key, ..)) if held_key == key => current.take(),
                _ => None,
            };
            let (version, is_new, changed) = match &prior {
                None => (1, true, true),
                Some((_, v, _, true)) => (v + 1, true, true),
                Some((_, v, h, false)) => {
                    live += 1;
                    (v + 1, false, *h != Some(hash))
                }
            };
            if prior.is_some() {
                current = next_held()?;
            }
            if !changed {
                delta.unchanged += 1;
                continue;
            }
            if is_new {
                delta.created += 1;
            } else {
                delta.updated += 1;
            }
            delta.changes.push(ChangeEnvelope::with_raw_payload(data_type, key.to_string(), version, origin, Some(payload)));
            delta.hashes.push(Some(hash));
        }
        while let Some((held_key, version, _, deleted)) = current.take() {
            if !deleted {
                live += 1;
                vanish(&mut delta, held_key, version);
            }
            current = next_held()?;
        }
        if !force && live > 0 && delta.deleted as f64 > self.max_delete_share * live as f64 {
            return Err(LedgerError::DeleteGuard { data_type, deletes: delta.deleted, live, max_share: self.max_delete_share });
        }
        Ok(delta)
    }

    /// [`plan`](Self::plan) for one data type of a merged state, streaming:
    /// each record is serialized as the comparison reaches it, so only the
    /// delta is held, never the whole serialized data type.
    pub fn plan_state(&self, state: &MergedState, data_type: DataType, origin: &str, force: bool) -> Result<Delta, LedgerError> {
        let mut failure = None;
        let records = state.records(data_type).map_while(|(key, record)| match record {
            Ok(payload) => Some((key, payload)),
            Err(source) => {
                failure = Some(source);
                None
            }
        });
        let planned = self.plan(data_type, records, origin, force);
        // Checked first: a record that stopped the stream must not be read as the end of the data.
        if let Some(source) = failure {
            return Err(LedgerError::Encode { data_type, source });
        }
        planned
    }

    /// Plans a few individual changes (real time): `Some(payload)` upserts a
    /// record, `None` deletes it. Unlike [`plan`](Self::plan), records not
    /// named are left alone, and each named one costs one indexed lookup,
    /// whatever the size of the data type. Unchanged records and deletes of
    /// unknown or already deleted keys plan nothing.
    ///
    /// ```
    /// use hr_core::{DataType, Ledger};
    /// let mut ledger = Ledger::in_memory().unwrap();
    /// let payload = serde_json::value::RawValue::from_string(r#"{"set":"g","code":"1","name":"x"}"#.into()).unwrap();
    /// let delta = ledger.plan_changes(DataType::MasterData, [("g:1", Some(payload))], "hr").unwrap();
    /// assert_eq!((delta.created, delta.changes[0].version), (1, 1));
    /// ledger.commit(DataType::MasterData, &delta).unwrap();
    /// let delta = ledger.plan_changes(DataType::MasterData, [("g:1", None)], "hr").unwrap();
    /// assert_eq!((delta.deleted, delta.changes[0].version), (1, 2));
    /// ```
    pub fn plan_changes<K: AsRef<str>>(
        &self,
        data_type: DataType,
        changes: impl IntoIterator<Item = (K, Option<Box<RawValue>>)>,
        origin: &str,
    ) -> Result<Delta, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT version, hash, deleted FROM ledger WHERE data_type = ?1 AND key = ?2")
            .map_err(self.storage())?;
        let mut delta = Delta::default();
        for (key, payload) in changes {
            let key = key.as_ref();
            let prior: Option<(u64, Option<[u8; 16]>, bool)> = stmt
                .query_row(params![data_type.as_str(), key], |r| {
                    let hash: Option<Vec<u8>> = r.get(1)?;
                    Ok((r.get::<_, i64>(0)? as u64, hash.and_then(|h| h.try_into().ok()), r.get::<_, i64>(2)? != 0))
                })
                .optional()
                .map_err(self.storage())?;
            let next = prior.map(|(v, ..)| v + 1).unwrap_or(1);
            match (payload, prior) {
                (None, Some((_, _, false))) => {
                    delta.changes.push(ChangeEnvelope::delete(data_type, key.to_string(), next, origin));
                    delta.hashes.push(None);
                    delta.deleted += 1;
                }
                (None, _) => delta.unchanged += 1,
                (Some(payload), prior) => {
                    let hash = content_hash(payload.get());
                    match prior {
                        Some((_, held, false)) if held == Some(hash) => {
                            delta.unchanged += 1;
                            continue;
                        }
                        Some((_, _, false)) => delta.updated += 1,
                        _ => delta.created += 1,
                    }
                    delta.changes.push(ChangeEnvelope::with_raw_payload(data_type, key.to_string(), next, origin, Some(payload)));
                    delta.hashes.push(Some(hash));
                }
            }
        }
        Ok(delta)
    }

    /// Records a delta as sent, after its propagation succeeded.
    pub fn commit(&mut self, data_type: DataType, delta: &Delta) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO ledger (data_type, key, version, hash, deleted) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(storage)?;
            for (change, hash) in delta.changes.iter().zip(&delta.hashes) {
                stmt.execute(params![data_type.as_str(), change.key, change.version as i64, hash.map(|h| h.to_vec()), hash.is_none() as i64])
                    .map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// The hub's digest of a data type: what every target must hold.
    pub fn digest(&self, data_type: DataType) -> Result<Digest, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT key, version, deleted FROM ledger WHERE data_type = ?1").map_err(self.storage())?;
        let mut rows = stmt.query([data_type.as_str()]).map_err(self.storage())?;
        let mut digest = Digest::default();
        while let Some(row) = rows.next().map_err(self.storage())? {
            let key: String = row.get(0).map_err(self.storage())?;
            let version: i64 = row.get(1).map_err(self.storage())?;
            let deleted: i64 = row.get(2).map_err(self.storage())?;
            digest.add(&key, version as u64, deleted != 0);
        }
        Ok(digest)
    }

    /// The version held for a key, with whether it is a tombstone.
    pub fn version_of(&self, data_type: DataType, key: &str) -> Result<Option<(u64, bool)>, LedgerError> {
        self.conn
            .query_row("SELECT version, deleted FROM ledger WHERE data_type = ?1 AND key = ?2", params![data_type.as_str(), key], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? != 0))
            })
            .optional()
            .map_err(self.storage())
    }
}
