//! The hub's ledger: key -> version and content hash per data type, which
//! turns periodic full loads into deltas, and the versions that may have
//! left the hub.

use crate::digest::{ContentHash, Digest, DigestEntry};
use crate::envelope::{ChangeEnvelope, Operation};
use crate::field_scope::{FieldScope, FieldScopeError};
use crate::holdback::HeldBack;
use crate::merge::{Identities, MergedState};
use crate::quarantine::Quarantined;
use crate::realtime::RealtimeChange;
use crate::schema::DataType;
use compact_str::CompactString;
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

mod cases;
pub use cases::{CaseDecision, ReviewCase};

/// Default largest share of a data type's live records one run may delete.
pub const DEFAULT_MAX_DELETE_SHARE: f64 = 0.2;

/// Why the ledger could not plan or record a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The ledger holds something this version cannot read.
    #[error("ledger database {path} is damaged: {detail}; restore it from a backup, or remove it and let the next run repair every system")]
    Corrupt {
        /// The database file.
        path: String,
        /// What cannot be read.
        detail: String,
    },
    /// The ledger's file or its lock file could not be created or opened.
    #[error("ledger database {path}: {source}")]
    Io {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be reduced to an audience's fields.
    #[error("ledger: {0}")]
    Scope(#[from] FieldScopeError),
    /// A record could not be serialized.
    #[error("a {data_type} record could not be serialized: {source}")]
    Encode {
        /// The data type.
        data_type: DataType,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No review case has this id.
    #[error("there is no review case {id} (hub --cases lists them)")]
    NoSuchCase {
        /// The id asked for.
        id: String,
    },
    /// The review case was decided already; a decision is made once.
    #[error("review case {id} was decided already: {decision}, by {by}")]
    CaseDecided {
        /// The case.
        id: String,
        /// Its decision.
        decision: &'static str,
        /// Who made it.
        by: String,
    },
    /// Another process (or another `Ledger` in this one) writes this ledger.
    #[error("ledger database {path} is in use by {holder}; one hub writes a ledger at a time (stop the other hub, or give this one its own data directory)")]
    Locked {
        /// The database file.
        path: String,
        /// Who holds it, as its lock file says (process id, host, since when).
        holder: String,
    },
    /// A delta's payloads were asked of a merged state that does not hold
    /// the records it was planned from (see [`Delta::envelopes`]).
    #[error("the {data_type} record {key} is not what the delta was planned from: make its envelopes from the merged state it was planned from")]
    NotPlannedFrom {
        /// The data type.
        data_type: DataType,
        /// The record key (`[redacted]` for sensitive data types).
        key: String,
    },
    /// A reader kept the write-ahead log from being moved into the ledger's file.
    #[error("ledger {path}: a reader kept its log from being emptied; what the log holds is applied when the ledger is next opened")]
    LogKept {
        /// The ledger file.
        path: String,
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
///
/// A delta planned from a merged state ([`Ledger::plan_state`]) holds the
/// payloads of its first [`PAYLOADS_KEPT`] changes only: a run of a million
/// changes would hold them all until it is sent. Its other upserts carry
/// `payload: None` until [`envelopes`](Self::envelopes) makes them from that
/// state, a part at a time, as they are sent, with their event ids. Every
/// other delta carries its payloads.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Envelopes to send, in key order (see [`envelopes`](Self::envelopes)
    /// for the payloads of a delta planned from a merged state).
    pub changes: Vec<ChangeEnvelope>,
    /// Per change, what its commit records.
    facts: Vec<ChangeFacts>,
    /// The audiences whose hashes each change's facts hold, in order.
    audiences: Vec<(String, FieldScope)>,
    /// Records new to the ledger (or re-created after a delete).
    pub created: u64,
    /// Records whose content changed.
    pub updated: u64,
    /// Records that vanished.
    pub deleted: u64,
    /// Records identical to the ledger's.
    pub unchanged: u64,
    /// Changes sent again because an earlier run that failed may have left
    /// other content at a reserved version (counted in the above too).
    pub retried: u64,
    /// Records absent from the input because their source row was
    /// quarantined: kept at their last good version, not deleted.
    pub held_back: Vec<HeldRecord>,
    /// Changes the receivers would refuse: never given a version, never sent.
    pub rejected: Vec<RejectedChange>,
}

/// What the targets hold of a key, as far as a plan needs it (see [`Ledger::standing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// An employee's status (`active`, `on_leave`, `terminated`, as in the
    /// schema); a grant's `granted` or `revoked`.
    pub state: CompactString,
    /// An employee's org unit; `None` for a grant.
    pub place: Option<CompactString>,
}

impl Standing {
    /// Whether records of `data_type` give their keys a standing.
    fn applies_to(data_type: DataType) -> bool {
        matches!(data_type, DataType::Employee | DataType::Permission)
    }

    /// The standing a record's payload gives its key, for the data types that have one.
    pub fn of(data_type: DataType, payload: &str) -> Option<Standing> {
        #[derive(serde::Deserialize)]
        struct Facets {
            status: Option<crate::EmployeeStatus>,
            org_unit: Option<CompactString>,
            granted: Option<bool>,
        }
        let facets: Facets = serde_json::from_str(payload).ok()?;
        match data_type {
            DataType::Employee => {
                let status = serde_json::to_value(facets.status?).ok()?.as_str()?.into();
                Some(Standing { state: status, place: facets.org_unit })
            }
            DataType::Permission => Some(Standing { state: if facets.granted? { "granted" } else { "revoked" }.into(), place: None }),
            _ => None,
        }
    }
}

/// One entry of the audit log ([`Ledger::audit`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Its place in the log (increasing).
    pub seq: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who.
    pub actor: String,
    /// What: `run`, `realtime`, `approve`, ...
    pub action: String,
    /// Details (never sensitive).
    pub detail: serde_json::Value,
}

/// An audit log row (`seq, at, actor, action, detail`) as an entry.
fn audit_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let detail: String = row.get(4)?;
    Ok(AuditEntry { seq: row.get(0)?, at: row.get(1)?, actor: row.get(2)?, action: row.get(3)?, detail: serde_json::from_str(&detail).unwrap_or_default() })
}

/// A change a plan left out because it fails the receivers' own validation
/// ([`ChangeEnvelope::validate`]): reserving and sending it would fail its
/// whole batch in every run to come.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectedChange {
    /// The data type.
    pub data_type: DataType,
    /// The record key (`[redacted]` for sensitive data types).
    pub key: String,
    /// What is wrong, naming the field, never its value.
    pub problem: String,
}

/// Whether `change` is an upsert whose payload a delta planned from a
/// merged state left to be made when it is sent.
fn lacks_payload(change: &ChangeEnvelope) -> bool {
    change.op == Operation::Upsert && change.payload.is_none()
}

/// What a plan learns of one change's record while its payload is at hand:
/// what the commit records of it, so the payload need not be kept.
#[derive(Debug, Clone)]
struct ChangeFacts {
    /// The content hash (`None` for a delete).
    hash: Option<ContentHash>,
    /// Whether it creates its key in the targets.
    creates: bool,
    /// The standing its record gives the key (employees and grants).
    standing: Option<Standing>,
    /// Its record's hash as each of the delta's audiences holds it (none for a delete).
    scoped: Box<[ContentHash]>,
}

impl ChangeFacts {
    fn of(change: &ChangeEnvelope, hash: Option<ContentHash>, creates: bool, audiences: &[(String, FieldScope)]) -> Result<ChangeFacts, FieldScopeError> {
        let payload = change.payload_json();
        let standing = payload.filter(|_| Standing::applies_to(change.data_type)).and_then(|p| Standing::of(change.data_type, p));
        let scoped = match payload {
            Some(payload) => audiences
                .iter()
                .map(|(_, scope)| Ok(ContentHash::of(&scope.scoped_payload(change.data_type, payload)?)))
                .collect::<Result<_, FieldScopeError>>()?,
            None => Box::default(),
        };
        Ok(ChangeFacts { hash, creates, standing, scoped })
    }
}

impl Delta {
    /// An empty delta whose commit records each change's hash for `audiences` too.
    fn for_audiences(audiences: Option<&BTreeMap<String, FieldScope>>) -> Delta {
        let audiences = audiences.into_iter().flatten().map(|(name, scope)| (name.clone(), scope.clone())).collect();
        Delta { audiences, ..Delta::default() }
    }

    /// Whether nothing needs to travel.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether `changes[index]` creates its key in the targets (an upsert
    /// of a key no target holds live); `false` for updates and deletes.
    pub fn creates(&self, index: usize) -> bool {
        self.facts.get(index).is_some_and(|f| f.creates)
    }

    /// The content hash of `changes[index]`'s record (`None` for a delete).
    pub fn content_hash(&self, index: usize) -> Option<ContentHash> {
        self.facts.get(index).and_then(|f| f.hash)
    }

    /// The standing `changes[index]`'s record gives its key (employees and
    /// grants; `None` for other types and deletes).
    pub fn standing(&self, index: usize) -> Option<&Standing> {
        self.facts.get(index).and_then(|f| f.standing.as_ref())
    }

    /// The changes in `range` as they travel: borrowed when they carry their
    /// payloads, else copied with each upsert's payload made from `state`,
    /// the merged state the delta was planned from
    /// ([`Ledger::plan_state`]). A record `state` lacks, or whose content
    /// is not what was planned (and reserved) under its version, is
    /// refused: a version never carries other content.
    ///
    /// # Panics
    /// If `range` is out of the changes' bounds.
    pub fn envelopes(&self, range: std::ops::Range<usize>, state: &MergedState) -> Result<Cow<'_, [ChangeEnvelope]>, LedgerError> {
        let changes = &self.changes[range.clone()];
        if !changes.iter().any(lacks_payload) {
            return Ok(Cow::Borrowed(changes));
        }
        changes
            .iter()
            .zip(&self.facts[range])
            .map(|(change, facts)| {
                let mut change = change.clone();
                if lacks_payload(&change) {
                    let not_planned = || LedgerError::NotPlannedFrom { data_type: change.data_type, key: change.key_for_logs().to_string() };
                    let payload = state.record(change.data_type, &change.key).ok_or_else(not_planned)?;
                    let payload = payload.map_err(|source| LedgerError::Encode { data_type: change.data_type, source })?;
                    if facts.hash != Some(ContentHash::of(payload.get())) {
                        return Err(not_planned());
                    }
                    change.payload = Some(payload);
                    change.event_id = ChangeEnvelope::new_event_id();
                }
                Ok(change)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Cow::Owned)
    }

    /// Keeps only the changes `keep` accepts, recounting what they do.
    pub fn retain(&mut self, keep: impl Fn(&ChangeEnvelope) -> bool) {
        let mut kept = Delta {
            held_back: std::mem::take(&mut self.held_back),
            rejected: std::mem::take(&mut self.rejected),
            audiences: std::mem::take(&mut self.audiences),
            ..Delta::default()
        };
        let changes = std::mem::take(&mut self.changes).into_iter().zip(std::mem::take(&mut self.facts));
        for (change, facts) in changes.filter(|(change, _)| keep(change)) {
            *(match (change.op, facts.creates) {
                (Operation::Delete, _) => &mut kept.deleted,
                (Operation::Upsert, true) => &mut kept.created,
                (Operation::Upsert, false) => &mut kept.updated,
            }) += 1;
            kept.changes.push(change);
            kept.facts.push(facts);
        }
        kept.unchanged = self.unchanged;
        kept.retried = self.retried;
        *self = kept;
    }

    /// Adds `change` if a receiver would take it, or else records it as
    /// rejected; whether it was added.
    fn push(&mut self, change: ChangeEnvelope, hash: Option<ContentHash>, creates: bool) -> Result<bool, LedgerError> {
        if let Err(e) = change.validate() {
            let problem = match e {
                crate::EnvelopeError::Invalid { problem, .. } => problem,
                other => other.to_string(),
            };
            tracing::warn!(data_type = %change.data_type, key = %change.key_for_logs(), %problem, "change left out: a receiver would refuse it");
            self.rejected.push(RejectedChange { data_type: change.data_type, key: change.key_for_logs().to_string(), problem });
            return Ok(false);
        }
        self.facts.push(ChangeFacts::of(&change, hash, creates, &self.audiences)?);
        self.changes.push(change);
        Ok(true)
    }
}

/// A record kept at its last good version because its new source row was quarantined.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldRecord {
    /// The data type.
    pub data_type: DataType,
    /// The record key.
    pub key: String,
    /// The version every target keeps.
    pub version: u64,
    /// The quarantined source row that would have replaced it.
    pub quarantined: Quarantined,
}

impl std::fmt::Debug for HeldRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldRecord")
            .field("data_type", &self.data_type)
            .field("key", &self.data_type.shown_key(&self.key))
            .field("version", &self.version)
            .field("quarantined", &self.quarantined)
            .finish()
    }
}

/// How [`Ledger::plan_with`] treats departures.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// Send deletions even when more than the delete guard allows.
    pub allow_mass_delete: bool,
    /// Records whose source rows were quarantined: absent, but not departed.
    pub hold: Option<&'a HeldBack>,
}

/// One repair: send `payload` (or a delete) for `key` at a version above
/// `above` and above anything the ledger committed or reserved.
pub struct Repair {
    /// The record key.
    pub key: String,
    /// The record as the hub holds it; `None` when the hub holds no live record.
    pub payload: Option<Box<RawValue>>,
    /// The highest version any target was seen holding for the key.
    pub above: u64,
}

// The payload may hold a salary: Debug shows only the version facts.
impl std::fmt::Debug for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repair").field("upsert", &self.payload.is_some()).field("above", &self.above).finish_non_exhaustive()
    }
}

/// What the ledger holds for one key.
#[derive(Debug, Clone, Copy)]
struct Held {
    version: u64,
    hash: Option<ContentHash>,
    deleted: bool,
}

/// The hub's ledger, in an SQLite file: key -> version and content hash per
/// data type, which turns periodic full loads into deltas, and the versions
/// that may have left the hub.
///
/// # Versions are never reused
///
/// A run [`plan`](Ledger::plan)s its changes, [`reserve`](Ledger::reserve)s
/// their versions durably *before* anything is sent, and
/// [`commit`](Ledger::commit)s them once every target has them. A run that
/// fails in between leaves its reservations: the next plan gives every such
/// key a version above the reserved one and sends it again even if its
/// content is back to what was committed, because some target may hold the
/// failed run's content at the reserved version. So a version that may have
/// reached a target is never given to other content, across failures and
/// restarts (the reservations are in the same SQLite file).
///
/// # Repairs sent to some targets
///
/// A repair goes only to the targets that differ. The ledger's row of the
/// key stays what the other targets hold, and [`commit_to`](Ledger::commit_to)
/// remembers the receivers' version apart; [`entries_for_target`](Ledger::entries_for_target)
/// is what one target must hold. Every later plan of the key numbers it
/// above those versions too, and a change every target receives
/// supersedes them.
///
/// # Last known good
///
/// A record the ledger holds that is absent from a new full load is a
/// departure, unless [`PlanOptions::hold`] says its source row was
/// quarantined: then it keeps its last good version everywhere and is listed
/// in [`Delta::held_back`].
///
/// ```
/// use hr_core::{DataType, Ledger, MasterData};
/// let mut ledger = Ledger::in_memory().unwrap();
/// let md = MasterData { set: "grade".into(), code: "G1".into(), name: "Staff".into(), attributes: Default::default() };
/// let payload = serde_json::value::to_raw_value(&md).unwrap();
/// let first = ledger.plan(DataType::MasterData, [(md.key(), payload.clone())], "hr", false).unwrap();
/// assert_eq!(first.created, 1);
/// ledger.reserve(DataType::MasterData, &first).unwrap();
/// ledger.commit(DataType::MasterData, &first).unwrap();
/// let again = ledger.plan(DataType::MasterData, [(md.key(), payload)], "hr", false).unwrap();
/// assert!(again.changes.is_empty());
/// ```
pub struct Ledger {
    conn: Connection,
    path: String,
    /// Held for the ledger's life: the lock that keeps a second writer out.
    _lock: Option<std::fs::File>,
    max_delete_share: f64,
    /// Per data type, the audiences that receive it without some fields,
    /// by name ([`FieldScope::audience`]).
    audiences: BTreeMap<DataType, BTreeMap<String, FieldScope>>,
}

/// What a change sent to some targets alone leaves them holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentAlone {
    /// The ledger's content of the key (a repair), reserved as every target's change is.
    LedgersContent,
    /// Content of their own (a pre-hire), reserved for them alone ([`Ledger::reserve_own`]).
    OwnContent,
}

/// The origin of what one target alone is sent ([`Ledger::plan_own`]).
const OWN_ORIGIN: &str = "hr-hub";

/// What the ledger remembers of one key a target was sent alone.
#[derive(Debug, Clone, Copy)]
struct OwnEntry {
    version: u64,
    deleted: bool,
    /// Content of its own (a pre-hire), where the ledger's row is not what it holds.
    content: Option<ContentHash>,
}

impl OwnEntry {
    /// `entry`, the ledger's, as the target holds it.
    fn apply_to(&self, entry: &mut DigestEntry) {
        entry.version = self.version;
        if self.deleted {
            entry.content = None;
        } else if let Some(hash) = self.content {
            entry.content = Some(hash);
        }
    }

    /// The content the target holds of its own, if it holds any.
    fn held(&self) -> Option<ContentHash> {
        self.content.filter(|_| !self.deleted)
    }
}

/// What the ledger shows for an audience whose hash of a live record it
/// never computed (the audience is new): equal to no stored body, so the
/// record counts as drift and is repaired.
const UNKNOWN_SCOPED_CONTENT: ContentHash = ContentHash([0; 16]);

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let audiences: Vec<String> = self.audiences.values().flat_map(|a| a.keys().cloned()).collect();
        f.debug_struct("Ledger").field("path", &self.path).field("max_delete_share", &self.max_delete_share).field("audiences", &audiences).finish()
    }
}

fn hash_from_blob(blob: Option<Vec<u8>>) -> Option<ContentHash> {
    blob.and_then(|h| h.try_into().ok()).map(ContentHash)
}

impl Ledger {
    /// Opens (creating if needed, readable by its owner only) the ledger at
    /// `path`, and locks it for this `Ledger`'s life: two writers would give
    /// one version to two contents. A ledger another process (or another
    /// `Ledger` of this one) holds is [`LedgerError::Locked`], naming the holder.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let lock = crate::private_file::lock_beside(path).map_err(|e| match e {
            crate::private_file::LockError::Held(holder) => LedgerError::Locked { path: shown.clone(), holder },
            crate::private_file::LockError::Io(source) => LedgerError::Io { path: shown.clone(), source },
        })?;
        crate::private_file::create_private(path).map_err(|source| LedgerError::Io { path: shown.clone(), source })?;
        let conn = Connection::open(path).map_err(|source| LedgerError::Storage { path: shown.clone(), source })?;
        Self::init(conn, shown, Some(lock))
    }

    /// Opens the ledger at `path` to read only, without taking its lock: what
    /// an operator's tools (status, plan preview, audit log) use beside the
    /// hub that writes it. Writing through it fails.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let storage = |source| LedgerError::Storage { path: shown.clone(), source };
        let conn =
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(storage)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(storage)?;
        Ok(Ledger { conn, path: shown, _lock: None, max_delete_share: DEFAULT_MAX_DELETE_SHARE, audiences: BTreeMap::new() })
    }

    /// Where the ledger is (`:memory:` for one in memory): what a transport
    /// keeps beside it (a directory's ids) goes next to it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A ledger that lives only in memory.
    pub fn in_memory() -> Result<Self, LedgerError> {
        let conn = Connection::open_in_memory().map_err(|source| LedgerError::Storage { path: ":memory:".into(), source })?;
        Self::init(conn, ":memory:".into(), None)
    }

    fn init(conn: Connection, path: String, lock: Option<std::fs::File>) -> Result<Self, LedgerError> {
        // A reader (a test, an operator's sqlite3) may hold the file for a moment: wait, do not fail.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|source| LedgerError::Storage { path: path.clone(), source })?;
        // FULL: a reservation must survive a power loss once its version may have left
        // (one fsync per transaction; a run has a handful).
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS ledger (
               data_type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
               hash BLOB, deleted INTEGER NOT NULL, PRIMARY KEY (data_type, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS reservation (
               data_type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
               PRIMARY KEY (data_type, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS identity (
               source_id TEXT PRIMARY KEY, unified_id TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS realtime (
               data_type TEXT NOT NULL, key TEXT NOT NULL, at TEXT NOT NULL, payload TEXT,
               PRIMARY KEY (data_type, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS standing (
               data_type TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, place TEXT,
               PRIMARY KEY (data_type, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS audit (
               seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
               action TEXT NOT NULL, detail TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_action ON audit (action, seq);
             CREATE TABLE IF NOT EXISTS scoped_hash (
               data_type TEXT NOT NULL, audience TEXT NOT NULL, key TEXT NOT NULL, hash BLOB NOT NULL,
               PRIMARY KEY (data_type, audience, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS target_version (
               target TEXT NOT NULL, data_type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
               deleted INTEGER NOT NULL, PRIMARY KEY (target, data_type, key)) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS target_version_by_key ON target_version (data_type, key);
             CREATE TABLE IF NOT EXISTS own_reservation (
               target TEXT NOT NULL, data_type TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
               PRIMARY KEY (target, data_type, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS target_content (
               target TEXT NOT NULL, data_type TEXT NOT NULL, key TEXT NOT NULL, hash BLOB NOT NULL,
               PRIMARY KEY (target, data_type, key)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS remembered_digest (
               data_type TEXT NOT NULL, name TEXT NOT NULL, digest TEXT NOT NULL,
               PRIMARY KEY (data_type, name)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS review_case (
               id TEXT PRIMARY KEY, employees TEXT NOT NULL, why TEXT NOT NULL, records TEXT NOT NULL,
               opened_at TEXT NOT NULL, decision TEXT, decided_by TEXT, decided_at TEXT) WITHOUT ROWID;",
        )
        .map_err(|source| LedgerError::Storage { path: path.clone(), source })?;
        Ok(Ledger { conn, path, _lock: lock, max_delete_share: DEFAULT_MAX_DELETE_SHARE, audiences: BTreeMap::new() })
    }

    /// Keeps, for every delta planned from now on (the plan takes each
    /// record's hashes, its commit stores them), the hash of every record
    /// as each of `scopes` sees it, so [`digest_for`](Self::digest_for) can say what
    /// a target that goes without some fields must hold. A live record
    /// committed before its audience was known shows an unknown hash there,
    /// so reconciliation repairs it.
    pub fn keep_audiences<'a>(&mut self, scopes: impl IntoIterator<Item = &'a FieldScope>) {
        for scope in scopes {
            for data_type in scope.narrowed_types() {
                let name = scope.audience(data_type).expect("a narrowed type has an audience");
                let only_this_type = FieldScope::full().omitting(data_type, scope.omitted(data_type).to_vec()).expect("omitted fields are optional");
                self.audiences.entry(data_type).or_default().insert(name, only_this_type);
            }
        }
    }

    /// Sets the delete guard's limit (a share between 0 and 1).
    pub fn with_max_delete_share(mut self, share: f64) -> Self {
        self.max_delete_share = share.clamp(0.0, 1.0);
        self
    }

    /// The delete guard's limit (a share between 0 and 1).
    pub fn max_delete_share(&self) -> f64 {
        self.max_delete_share
    }

    fn storage(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |source| LedgerError::Storage { path: self.path.clone(), source }
    }

    /// [`storage`](Self::storage) that does not borrow the ledger, for a transaction's errors.
    fn storage_owned(&self) -> impl Fn(rusqlite::Error) -> LedgerError {
        let path = self.path.clone();
        move |source| LedgerError::Storage { path: path.clone(), source }
    }

    /// Compares the new full state of a data type (sorted by key) with the
    /// ledger and returns only what must travel: new and changed records as
    /// upserts with the next version, vanished ones as deletes, and every key
    /// an earlier failed run may have left elsewhere (see the module docs).
    /// Nothing is recorded until [`reserve`](Self::reserve) and
    /// [`commit`](Self::commit).
    ///
    /// Memory: one pass over both sides in key order; only the delta (and
    /// the few reserved keys) is kept.
    pub fn plan<K: AsRef<str>>(
        &self,
        data_type: DataType,
        records: impl IntoIterator<Item = (K, Box<RawValue>)>,
        origin: &str,
        allow_mass_delete: bool,
    ) -> Result<Delta, LedgerError> {
        self.plan_with(data_type, records, origin, &PlanOptions { allow_mass_delete, hold: None })
    }

    /// [`plan`](Self::plan) with records held back (see [`PlanOptions`]).
    pub fn plan_with<K: AsRef<str>>(
        &self,
        data_type: DataType,
        records: impl IntoIterator<Item = (K, Box<RawValue>)>,
        origin: &str,
        options: &PlanOptions<'_>,
    ) -> Result<Delta, LedgerError> {
        let hashed = records.into_iter().map(|(key, payload)| {
            let hash = ContentHash::of(payload.get());
            (key, hash, payload)
        });
        self.plan_hashed(data_type, hashed, origin, options)
    }

    /// [`plan_with`](Self::plan_with) for records whose content hashes are
    /// known, their payloads made only for the records the plan sends.
    fn plan_hashed<K: AsRef<str>, P: Payload>(
        &self,
        data_type: DataType,
        records: impl IntoIterator<Item = (K, ContentHash, P)>,
        origin: &str,
        options: &PlanOptions<'_>,
    ) -> Result<Delta, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT key, version, hash, deleted FROM ledger WHERE data_type = ?1 ORDER BY key").map_err(self.storage())?;
        let mut held = HeldRows { rows: stmt.query([data_type.as_str()]).map_err(self.storage())?, key: String::new(), held: None };
        held.advance().map_err(self.storage())?;
        let mut planner = Planner {
            data_type,
            origin,
            hold: options.hold,
            reserved: self.reservations(data_type)?,
            sent_to_some: self.sent_to_some(data_type)?,
            delta: Delta::for_audiences(self.audiences.get(&data_type)),
            live: 0,
            guarded_deletes: 0,
        };
        let mut last_key: Option<K> = None;
        for (key, hash, payload) in records {
            if last_key.as_ref().is_some_and(|last| last.as_ref() >= key.as_ref()) {
                return Err(LedgerError::Unsorted { data_type, key: key.as_ref().to_string() });
            }
            // Held keys before this one have vanished from the source.
            while let Some(prior) = held.before(key.as_ref()) {
                planner.vanished(held.key.clone(), Some(prior))?;
                held.advance().map_err(self.storage())?;
            }
            let prior = held.at(key.as_ref());
            if prior.is_some() {
                held.advance().map_err(self.storage())?;
            }
            planner.present_hashed(key.as_ref(), hash, payload, prior)?;
            last_key = Some(key);
        }
        while let Some(prior) = held.held {
            planner.vanished(held.key.clone(), Some(prior))?;
            held.advance().map_err(self.storage())?;
        }
        planner.finish(options.allow_mass_delete, self.max_delete_share)
    }

    /// [`plan_with`](Self::plan_with) for one data type of a merged state,
    /// streaming: each record is serialized as the comparison reaches it, so
    /// only the delta is held, never the whole serialized data type. The
    /// two halves of the work run on two threads: one serializes and hashes
    /// the records, the other compares them with the ledger, a few thousand
    /// records apart at most.
    ///
    /// The delta keeps the payloads of its first [`PAYLOADS_KEPT`] changes
    /// only: send it through [`Delta::envelopes`] with the same `state`, a
    /// part at a time.
    pub fn plan_state(&self, state: &MergedState, data_type: DataType, origin: &str, options: &PlanOptions<'_>) -> Result<Delta, LedgerError> {
        std::thread::scope(|scope| {
            let (chunks, received) = std::sync::mpsc::sync_channel(PLAN_CHUNKS_IN_FLIGHT);
            scope.spawn(move || serialize_and_hash(state, data_type, &chunks));
            let mut failure = None;
            let records = received.iter().map_while(|chunk| match chunk {
                Ok(chunk) => Some(chunk),
                Err(source) => {
                    failure = Some(source);
                    None
                }
            });
            let records = records.flatten().map(|(key, hash)| (key, hash, StateRecord { state, data_type, key }));
            let planned = self.plan_hashed(data_type, records, origin, options);
            // Checked first: a record that stopped the stream must not be read as the end of the data.
            if let Some(source) = failure {
                return Err(LedgerError::Encode { data_type, source });
            }
            planned
        })
    }

    /// Plans a few individual changes (real time): `Some(payload)` upserts a
    /// record, `None` deletes it. Unlike [`plan`](Self::plan), records not
    /// named are left alone, and each named one costs one indexed lookup,
    /// whatever the size of the data type. Unchanged records and deletes of
    /// unknown or already deleted keys plan nothing, unless a failed run may
    /// have left other content under the key.
    ///
    /// ```
    /// use hr_core::{DataType, Ledger};
    /// let mut ledger = Ledger::in_memory().unwrap();
    /// let payload = serde_json::value::RawValue::from_string(r#"{"set":"g","code":"1","name":"x"}"#.into()).unwrap();
    /// let delta = ledger.plan_changes(DataType::MasterData, [("g:1", Some(payload))], "hr").unwrap();
    /// assert_eq!((delta.created, delta.changes[0].version), (1, 1));
    /// ledger.reserve(DataType::MasterData, &delta).unwrap();
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
        let mut planner = Planner {
            data_type,
            origin,
            hold: None,
            reserved: FxHashMap::default(),
            sent_to_some: FxHashMap::default(),
            delta: Delta::for_audiences(self.audiences.get(&data_type)),
            live: 0,
            guarded_deletes: 0,
        };
        for (key, payload) in changes {
            let key = key.as_ref();
            let prior = self.held(data_type, key)?;
            if let Some(reserved) = self.reserved(data_type, key)? {
                planner.reserved.insert(key.to_string(), reserved);
            }
            if let Some(version) = self.sent_to_some_of(data_type, key)? {
                planner.sent_to_some.insert(key.to_string(), version);
            }
            match payload {
                Some(payload) => {
                    let hash = ContentHash::of(payload.get());
                    planner.present_hashed(key, hash, payload, prior)?;
                }
                None => planner.vanished(key.to_string(), prior)?,
            }
        }
        planner.finish(true, self.max_delete_share)
    }

    /// Plans repairs found by reconciliation: every one is sent, whatever the
    /// ledger holds, at a version above the ledger's, the reserved one and
    /// [`Repair::above`], so every target takes it.
    ///
    /// [`Repair::above`] is a target's word: pass only versions you trust
    /// (the hub passes those a majority of the systems receiving the key
    /// hold), or one system claiming a huge version pushes the key towards
    /// [`MAX_VERSION`](crate::MAX_VERSION) in every system.
    pub fn plan_repairs(&self, data_type: DataType, repairs: impl IntoIterator<Item = Repair>, origin: &str) -> Result<Delta, LedgerError> {
        let mut delta = Delta::for_audiences(self.audiences.get(&data_type));
        for repair in repairs {
            let prior = self.held(data_type, &repair.key)?;
            let version = self.highest_issued(data_type, &repair.key)?.max(repair.above).saturating_add(1);
            let live = matches!(prior, Some(Held { deleted: false, .. }));
            let upsert = repair.payload.is_some();
            let (change, hash) = match repair.payload {
                Some(payload) => {
                    let hash = ContentHash::of(payload.get());
                    (ChangeEnvelope::with_raw_payload(data_type, repair.key, version, origin, Some(payload)), Some(hash))
                }
                None => (ChangeEnvelope::delete(data_type, repair.key, version, origin), None),
            };
            if delta.push(change, hash, upsert && !live)? {
                *(match (upsert, live) {
                    (false, _) => &mut delta.deleted,
                    (true, true) => &mut delta.updated,
                    (true, false) => &mut delta.created,
                }) += 1;
            }
        }
        Ok(delta)
    }

    /// Records durably that the versions of `delta` may leave the hub. Call
    /// it before sending: a version reserved is never given to other content.
    pub fn reserve(&mut self, data_type: DataType, delta: &Delta) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO reservation (data_type, key, version) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (data_type, key) DO UPDATE SET version = max(version, excluded.version)",
                )
                .map_err(storage)?;
            for change in &delta.changes {
                stmt.execute(params![data_type.as_str(), change.key, change.version as i64]).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// Records that `targets` alone received `delta` (repairs sent only to
    /// the systems that differ), after its propagation succeeded, and
    /// releases the reservations it settles. The ledger's own row of each
    /// key stays what every other target holds; each of `targets` is
    /// expected at the new version from now on (see
    /// [`entries_for_target`](Self::entries_for_target)), until a change
    /// every target receives supersedes it.
    ///
    /// Only for changes carrying what the ledger already holds of their key
    /// (see [`holds`](Self::holds)): a target holds the same content as the
    /// others, at a version of its own.
    pub fn commit_to(&mut self, data_type: DataType, delta: &Delta, targets: &[String]) -> Result<(), LedgerError> {
        self.record_sent_alone(data_type, delta, targets, SentAlone::LedgersContent)
    }

    /// Records, in one transaction, the version each of `targets` alone
    /// was sent of each change of `delta`, and what it now holds of its
    /// own under the key: nothing ([`SentAlone::LedgersContent`], a repair)
    /// or the change's content ([`SentAlone::OwnContent`], a pre-hire).
    /// Settles the reservations the changes were sent under.
    fn record_sent_alone(&mut self, data_type: DataType, delta: &Delta, targets: &[String], sent: SentAlone) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut record = tx
                .prepare_cached("INSERT OR REPLACE INTO target_version (target, data_type, key, version, deleted) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(storage)?;
            let mut keep =
                tx.prepare_cached("INSERT OR REPLACE INTO target_content (target, data_type, key, hash) VALUES (?1, ?2, ?3, ?4)").map_err(storage)?;
            let mut own_content_ends = tx.prepare_cached("DELETE FROM target_content WHERE target = ?1 AND data_type = ?2 AND key = ?3").map_err(storage)?;
            let mut own_doubt_ends =
                tx.prepare_cached("DELETE FROM own_reservation WHERE target = ?1 AND data_type = ?2 AND key = ?3 AND version <= ?4").map_err(storage)?;
            if !delta.changes.is_empty() {
                forget_digests(&tx, data_type).map_err(storage)?;
            }
            let mut settle = tx.prepare_cached("DELETE FROM reservation WHERE data_type = ?1 AND key = ?2 AND version <= ?3").map_err(storage)?;
            for (change, facts) in delta.changes.iter().zip(&delta.facts) {
                let version = change.version as i64;
                for target in targets {
                    record.execute(params![target, data_type.as_str(), change.key, version, (change.op == Operation::Delete) as i64]).map_err(storage)?;
                    match (sent, facts.hash) {
                        (SentAlone::OwnContent, Some(hash)) => keep.execute(params![target, data_type.as_str(), change.key, hash.0.to_vec()]),
                        // A repair carries the ledger's content, a delete nothing: whatever the target held of its own is gone.
                        _ => own_content_ends.execute(params![target, data_type.as_str(), change.key]),
                    }
                    .map_err(storage)?;
                    own_doubt_ends.execute(params![target, data_type.as_str(), change.key, version]).map_err(storage)?;
                }
                if sent == SentAlone::LedgersContent {
                    settle.execute(params![data_type.as_str(), change.key, version]).map_err(storage)?;
                }
            }
        }
        tx.commit().map_err(storage)
    }

    /// Whether the ledger holds `content` for `key`: a live record with that
    /// hash, or (`None`) a delete or no record at all. Only such a change
    /// may go to some targets alone ([`commit_to`](Self::commit_to)).
    pub fn holds(&self, data_type: DataType, key: &str, content: Option<ContentHash>) -> Result<bool, LedgerError> {
        Ok(match (self.held(data_type, key)?, content) {
            (Some(Held { deleted: false, hash, .. }), Some(content)) => hash == Some(content),
            (None | Some(Held { deleted: true, .. }), None) => true,
            _ => false,
        })
    }

    /// Records a delta as held by every target, after its propagation
    /// succeeded, and releases the reservations it settles.
    pub fn commit(&mut self, data_type: DataType, delta: &Delta) -> Result<(), LedgerError> {
        self.commit_realtime(data_type, delta, &[])
    }

    /// Moves what the write-ahead log holds into the ledger's file (and
    /// empties the log), as closing the ledger does: for a process that
    /// ends without closing it.
    ///
    /// A reader holding the log (a `hub --status` beside this one) keeps
    /// it from being emptied: [`LedgerError::LogKept`] says so, and what
    /// the log holds is applied when the ledger is next opened.
    pub fn checkpoint(&self) -> Result<(), LedgerError> {
        let (busy, pages, moved): (i64, i64, i64) =
            self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).map_err(self.storage())?;
        match busy == 0 && pages == moved {
            true => Ok(()),
            false => Err(LedgerError::LogKept { path: self.path.clone() }),
        }
    }

    /// The digest remembered under `name` for `data_type`
    /// ([`remember_digests`](Self::remember_digests)), if no write of the
    /// data type's records, versions or audience hashes came since.
    pub fn remembered_digest(&self, data_type: DataType, name: &str) -> Result<Option<Digest>, LedgerError> {
        let text: Option<String> = self
            .conn
            .prepare_cached("SELECT digest FROM remembered_digest WHERE data_type = ?1 AND name = ?2")
            .and_then(|mut stmt| stmt.query_row(params![data_type.as_str(), name], |row| row.get(0)).optional())
            .map_err(self.storage())?;
        // One that cannot be read is recomputed, not trusted.
        Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Remembers digests computed from the ledger as it is now, each under
    /// a name of the caller's choosing (what the digest covers): a
    /// comparison with nothing sent since reads them instead of every row.
    /// Any later write of a data type's records, versions or audience
    /// hashes forgets that type's digests in its own transaction.
    ///
    /// They are a cache: a full comparison trusts none and computes them
    /// again (which also corrects any a writer outside this library left
    /// standing). A ledger opened read-only remembers nothing.
    pub fn remember_digests(&self, digests: &[(DataType, String, Digest)]) -> Result<(), LedgerError> {
        // A ledger read beside the hub that runs (status, plan preview) leaves the remembering to it.
        if digests.is_empty() || self.conn.is_readonly(rusqlite::MAIN_DB).map_err(self.storage())? {
            return Ok(());
        }
        let storage = self.storage();
        let tx = self.conn.unchecked_transaction().map_err(&storage)?;
        {
            let mut remember = tx.prepare_cached("INSERT OR REPLACE INTO remembered_digest (data_type, name, digest) VALUES (?1, ?2, ?3)").map_err(&storage)?;
            for (data_type, name, digest) in digests {
                let text = serde_json::to_string(digest).expect("a digest serializes");
                remember.execute(params![data_type.as_str(), name, text]).map_err(&storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// [`commit`](Self::commit) for a real-time delta: in the same
    /// transaction, remembers each change's time and record, so periodic
    /// runs apply "newer wins" to its key (see [`apply_newer_wins`](crate::apply_newer_wins)).
    pub fn commit_realtime(&mut self, data_type: DataType, delta: &Delta, changes: &[RealtimeChange]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut record =
                tx.prepare_cached("INSERT OR REPLACE INTO ledger (data_type, key, version, hash, deleted) VALUES (?1, ?2, ?3, ?4, ?5)").map_err(storage)?;
            let mut settle = tx.prepare_cached("DELETE FROM reservation WHERE data_type = ?1 AND key = ?2 AND version <= ?3").map_err(storage)?;
            // Every target receives this version: what a repair gave some of them is superseded.
            let mut rejoin = tx.prepare_cached("DELETE FROM target_version WHERE data_type = ?1 AND key = ?2 AND version <= ?3").map_err(storage)?;
            let mut own_content_ends = tx.prepare_cached("DELETE FROM target_content WHERE data_type = ?1 AND key = ?2").map_err(storage)?;
            let mut own_doubt_ends = tx.prepare_cached("DELETE FROM own_reservation WHERE data_type = ?1 AND key = ?2 AND version <= ?3").map_err(storage)?;
            // What some targets hold apart from the others is rare (repairs, pre-hires): a table
            // with no row of the type needs no delete per key, and a million of them cost seconds.
            let apart = |table: &str| holds_any(&tx, table, data_type).map_err(storage);
            if !delta.changes.is_empty() {
                forget_digests(&tx, data_type).map_err(storage)?;
            }
            let (repaired, own_content, own_doubt) = (apart("target_version")?, apart("target_content")?, apart("own_reservation")?);
            for (change, facts) in delta.changes.iter().zip(&delta.facts) {
                let (version, hash) = (change.version as i64, facts.hash);
                record.execute(params![data_type.as_str(), change.key, version, hash.map(|h| h.0.to_vec()), hash.is_none() as i64]).map_err(storage)?;
                settle.execute(params![data_type.as_str(), change.key, version]).map_err(storage)?;
                if repaired {
                    rejoin.execute(params![data_type.as_str(), change.key, version]).map_err(storage)?;
                }
                if own_content {
                    own_content_ends.execute(params![data_type.as_str(), change.key]).map_err(storage)?;
                }
                if own_doubt {
                    own_doubt_ends.execute(params![data_type.as_str(), change.key, version]).map_err(storage)?;
                }
            }
            let mut scoped =
                tx.prepare_cached("INSERT OR REPLACE INTO scoped_hash (data_type, audience, key, hash) VALUES (?1, ?2, ?3, ?4)").map_err(storage)?;
            let mut unscoped = tx.prepare_cached("DELETE FROM scoped_hash WHERE data_type = ?1 AND key = ?2").map_err(storage)?;
            // A delete clears the key's hashes of every audience, present or since removed.
            for change in delta.changes.iter().filter(|c| c.op == Operation::Delete) {
                unscoped.execute(params![data_type.as_str(), change.key]).map_err(storage)?;
            }
            for (audience, (name, _)) in delta.audiences.iter().enumerate() {
                for (change, facts) in delta.changes.iter().zip(&delta.facts).filter(|(c, _)| c.op == Operation::Upsert) {
                    scoped.execute(params![data_type.as_str(), name, change.key, facts.scoped[audience].0.to_vec()]).map_err(storage)?;
                }
            }
            if Standing::applies_to(data_type) {
                let mut stand = tx.prepare_cached("INSERT OR REPLACE INTO standing (data_type, key, state, place) VALUES (?1, ?2, ?3, ?4)").map_err(storage)?;
                let mut fall = tx.prepare_cached("DELETE FROM standing WHERE data_type = ?1 AND key = ?2").map_err(storage)?;
                for (change, facts) in delta.changes.iter().zip(&delta.facts) {
                    match &facts.standing {
                        Some(standing) => {
                            stand.execute(params![data_type.as_str(), change.key, standing.state.as_str(), standing.place.as_deref()]).map_err(storage)?
                        }
                        None => fall.execute(params![data_type.as_str(), change.key]).map_err(storage)?,
                    };
                }
            }
            let mut remember = tx.prepare_cached("INSERT OR REPLACE INTO realtime (data_type, key, at, payload) VALUES (?1, ?2, ?3, ?4)").map_err(storage)?;
            for change in changes.iter().filter(|c| c.data_type == data_type) {
                let at = change.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                remember.execute(params![data_type.as_str(), change.key, at, change.payload.as_deref().map(RawValue::get)]).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// The real-time changes of `data_type` no periodic run has settled yet.
    pub fn realtime_changes(&self, data_type: DataType) -> Result<Vec<RealtimeChange>, LedgerError> {
        self.realtime_where(data_type, None)
    }

    /// The unsettled real-time change of one key, if any.
    pub fn realtime_change(&self, data_type: DataType, key: &str) -> Result<Option<RealtimeChange>, LedgerError> {
        Ok(self.realtime_where(data_type, Some(key))?.pop())
    }

    fn realtime_where(&self, data_type: DataType, key: Option<&str>) -> Result<Vec<RealtimeChange>, LedgerError> {
        let sql = "SELECT key, at, payload FROM realtime WHERE data_type = ?1 AND (?2 IS NULL OR key = ?2)";
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.storage())?;
        let rows = stmt
            .query_map(params![data_type.as_str(), key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)))
            .map_err(self.storage())?;
        let mut changes = vec![];
        for row in rows {
            let (key, at, payload) = row.map_err(self.storage())?;
            let at = chrono::DateTime::parse_from_rfc3339(&at).map_err(|e| self.corrupt(format!("realtime time {at:?}: {e}")))?.to_utc();
            let payload = payload.map(RawValue::from_string).transpose().map_err(|e| self.corrupt(format!("realtime record of {data_type}: {e}")))?;
            changes.push(RealtimeChange { data_type, key, at, payload });
        }
        Ok(changes)
    }

    /// Forgets the real-time changes of `keys`: the source rules them again.
    pub fn settle_realtime(&mut self, data_type: DataType, keys: &[String]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut forget = tx.prepare_cached("DELETE FROM realtime WHERE data_type = ?1 AND key = ?2").map_err(storage)?;
            for key in keys {
                forget.execute(params![data_type.as_str(), key]).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    fn corrupt(&self, detail: String) -> LedgerError {
        LedgerError::Corrupt { path: self.path.clone(), detail }
    }

    /// Every key of a data type as the ledger holds it, with content hashes.
    pub fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, LedgerError> {
        self.entries_for(data_type, None)
    }

    /// The hub's digest of a data type: what every target must hold.
    pub fn digest(&self, data_type: DataType) -> Result<Digest, LedgerError> {
        Ok(Digest::of(&self.entries(data_type)?))
    }

    /// [`entries`](Self::entries) as an audience that goes without some
    /// fields holds them (`None`: the full records); see [`keep_audiences`](Self::keep_audiences).
    pub fn entries_for(&self, data_type: DataType, audience: Option<&str>) -> Result<Vec<DigestEntry>, LedgerError> {
        let mut entries = vec![];
        self.each_entry_for(data_type, audience, |e| entries.push(e))?;
        Ok(entries)
    }

    /// Calls `each` with every entry of [`entries_for`](Self::entries_for) `audience`, none held.
    fn each_entry_for(&self, data_type: DataType, audience: Option<&str>, mut each: impl FnMut(DigestEntry)) -> Result<(), LedgerError> {
        // A live record's hash for an audience that was never computed shows as unknown content.
        let (sql, unknown) = match audience {
            // `?2` is the audience, bound as NULL here: both queries take the same parameters.
            None => ("SELECT key, version, hash, deleted FROM ledger WHERE data_type = ?1 AND ?2 IS NULL", None),
            Some(_) => (
                "SELECT l.key, l.version, s.hash, l.deleted FROM ledger l \
                 LEFT JOIN scoped_hash s ON s.data_type = l.data_type AND s.audience = ?2 AND s.key = l.key WHERE l.data_type = ?1",
                Some(UNKNOWN_SCOPED_CONTENT),
            ),
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.storage())?;
        let rows = stmt
            .query_map(params![data_type.as_str(), audience], |row| {
                let deleted = row.get::<_, i64>(3)? != 0;
                let hash = hash_from_blob(row.get(2)?).or(unknown);
                Ok(DigestEntry { key: row.get(0)?, version: row.get::<_, i64>(1)? as u64, content: if deleted { None } else { hash } })
            })
            .map_err(self.storage())?;
        for row in rows {
            each(row.map_err(self.storage())?);
        }
        Ok(())
    }

    /// [`entries_for`](Self::entries_for) as `target` must hold them: at the
    /// versions repairs sent it alone (see [`commit_to`](Self::commit_to)),
    /// with the deletes of keys the ledger never held that it was sent.
    /// With what `target` alone holds ([`plan_own`](Self::plan_own)) too.
    pub fn entries_for_target(&self, data_type: DataType, audience: Option<&str>, target: &str) -> Result<Vec<DigestEntry>, LedgerError> {
        let own = self.target_versions(data_type, target)?;
        let mut entries = self.entries_for(data_type, audience)?;
        if own.is_empty() {
            return Ok(entries);
        }
        let mut left: FxHashMap<&str, OwnEntry> = own.iter().map(|(k, o)| (k.as_str(), *o)).collect();
        for entry in &mut entries {
            if let Some(own) = left.remove(entry.key.as_str()) {
                own.apply_to(entry);
            }
        }
        // Under keys the ledger has no record of, a target holds only what it alone was sent: a delete, or content of its own.
        entries.extend(left.into_iter().map(|(key, own)| DigestEntry { key: key.to_string(), version: own.version, content: own.held() }));
        Ok(entries)
    }

    /// The digest of the [`entries_for_target`](Self::entries_for_target)
    /// whose keys `admits` takes, computed as the ledger's rows are read:
    /// none is held, however many the type has.
    pub fn digest_for_target(&self, data_type: DataType, audience: Option<&str>, target: &str, admits: impl Fn(&str) -> bool) -> Result<Digest, LedgerError> {
        let own = self.target_versions(data_type, target)?;
        let mut left: FxHashMap<&str, OwnEntry> = own.iter().map(|(k, o)| (k.as_str(), *o)).collect();
        let mut digest = Digest::default();
        let mut add = |mut entry: DigestEntry| {
            if let Some(own) = left.remove(entry.key.as_str()) {
                own.apply_to(&mut entry);
            }
            if admits(&entry.key) {
                digest.add_entry(&entry);
            }
        };
        self.each_entry_for(data_type, audience, &mut add)?;
        for (key, own) in left {
            let entry = DigestEntry { key: key.to_string(), version: own.version, content: own.held() };
            if admits(&entry.key) {
                digest.add_entry(&entry);
            }
        }
        Ok(digest)
    }

    /// Whether `target` was sent any key of `data_type` at a version of its
    /// own (a repair, a record it alone holds): if not, it must hold exactly
    /// [`entries_for`](Self::entries_for) its audience.
    pub fn holds_own_versions(&self, data_type: DataType, target: &str) -> Result<bool, LedgerError> {
        self.conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM target_version WHERE target = ?1 AND data_type = ?2)")
            .and_then(|mut stmt| stmt.query_row(params![target, data_type.as_str()], |r| r.get(0)))
            .map_err(self.storage())
    }

    /// The keys `target` was sent at versions of its own, with those
    /// versions, whether they are deletes and any content its own.
    fn target_versions(&self, data_type: DataType, target: &str) -> Result<Vec<(String, OwnEntry)>, LedgerError> {
        let sql = "SELECT v.key, v.version, v.deleted, c.hash FROM target_version v \
                   LEFT JOIN target_content c ON c.target = v.target AND c.data_type = v.data_type AND c.key = v.key \
                   WHERE v.target = ?1 AND v.data_type = ?2";
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.storage())?;
        let rows = stmt
            .query_map(params![target, data_type.as_str()], |r| {
                let own = OwnEntry { version: r.get::<_, i64>(1)? as u64, deleted: r.get::<_, i64>(2)? != 0, content: hash_from_blob(r.get(3)?) };
                Ok((r.get::<_, String>(0)?, own))
            })
            .map_err(self.storage())?;
        rows.collect::<Result<_, _>>().map_err(self.storage())
    }

    /// Plans what `target` alone holds of `data_type` beside the ledger's
    /// records: a person a directory receives ahead of their hire date (see
    /// [`MergedState::pre_hires`]). Each of `records` (in key order) it does
    /// not hold as given is sent; each it alone holds that `records` lacks is
    /// deleted, unless `keep` says another change takes it over (the run
    /// sends the key to every target, or it is held back). A key whose last
    /// send to it may have failed ([`reserve_own`](Self::reserve_own)) is
    /// sent again. `scope` is the fields the target goes without: the
    /// content compared is what it holds.
    ///
    /// Every version is above each one issued for its key, and above those
    /// `given` holds (what this run gave other targets alone), which it
    /// adds to: no two contents share a version, whichever target gets them.
    /// The delta's hashes are of the target's content: commit it with
    /// [`commit_own`](Self::commit_own), never [`commit`](Self::commit).
    pub fn plan_own(
        &self,
        data_type: DataType,
        target: &str,
        scope: &FieldScope,
        records: Vec<(String, Box<RawValue>)>,
        keep: impl Fn(&str) -> bool,
        given: &mut std::collections::HashMap<String, u64>,
    ) -> Result<Delta, LedgerError> {
        let own = self.target_versions(data_type, target)?;
        let in_doubt = self.own_in_doubt(data_type, target, &own)?;
        let mut held: FxHashMap<String, OwnEntry> = own.into_iter().filter(|(_, own)| own.held().is_some()).collect();
        let mut delta = Delta::default();
        let mut next_version = |key: &str| -> Result<u64, LedgerError> {
            let version = self.highest_issued(data_type, key)?.max(given.get(key).copied().unwrap_or(0)).saturating_add(1);
            given.insert(key.to_string(), version);
            Ok(version)
        };
        for (key, payload) in records {
            let content = ContentHash::of(&scope.scoped_payload(data_type, payload.get())?);
            let before = held.remove(&key);
            if before.is_some_and(|own| own.content == Some(content)) && !in_doubt.contains(&key) {
                delta.unchanged += 1;
                continue;
            }
            let version = next_version(&key)?;
            if delta.push(ChangeEnvelope::with_raw_payload(data_type, key, version, OWN_ORIGIN, Some(payload)), Some(content), before.is_none())? {
                *(if before.is_none() { &mut delta.created } else { &mut delta.updated }) += 1;
            }
        }
        // Deleted where it was (or may have been) sent, unless another change takes the key over.
        let sent: std::collections::HashSet<&str> = delta.changes.iter().map(|c| c.key.as_str()).collect();
        let mut gone: Vec<String> = held.into_keys().chain(in_doubt).filter(|key| !keep(key) && !sent.contains(key.as_str())).collect();
        gone.sort_unstable();
        gone.dedup();
        for key in gone {
            let version = next_version(&key)?;
            if delta.push(ChangeEnvelope::delete(data_type, key, version, OWN_ORIGIN), None, false)? {
                delta.deleted += 1;
            }
        }
        Ok(delta)
    }

    /// Keys whose version reserved for `target` alone is above what it is
    /// known to hold: the send may have reached it, or not.
    fn own_in_doubt(&self, data_type: DataType, target: &str, own: &[(String, OwnEntry)]) -> Result<Vec<String>, LedgerError> {
        let known: FxHashMap<&str, u64> = own.iter().map(|(k, o)| (k.as_str(), o.version)).collect();
        let mut stmt = self.conn.prepare_cached("SELECT key, version FROM own_reservation WHERE target = ?1 AND data_type = ?2").map_err(self.storage())?;
        let rows = stmt.query_map(params![target, data_type.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).map_err(self.storage())?;
        let reserved: Vec<(String, u64)> = rows.collect::<Result<_, _>>().map_err(self.storage())?;
        Ok(reserved.into_iter().filter(|(key, version)| known.get(key.as_str()).is_none_or(|held| version > held)).map(|(key, _)| key).collect())
    }

    /// [`reserve`](Self::reserve) for a delta from [`plan_own`](Self::plan_own):
    /// what may reach `target` alone, kept apart from what every target may
    /// hold, so a failed send is sent again to it alone.
    pub fn reserve_own(&mut self, data_type: DataType, delta: &Delta, target: &str) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO own_reservation (target, data_type, key, version) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (target, data_type, key) DO UPDATE SET version = max(version, excluded.version)",
                )
                .map_err(storage)?;
            for change in &delta.changes {
                stmt.execute(params![target, data_type.as_str(), change.key, change.version as i64]).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// Records that `target` alone received `delta` from
    /// [`plan_own`](Self::plan_own), after its propagation succeeded: the
    /// content it holds of its own until a change every target receives
    /// supersedes it.
    pub fn commit_own(&mut self, data_type: DataType, delta: &Delta, target: &str) -> Result<(), LedgerError> {
        self.record_sent_alone(data_type, delta, &[target.to_string()], SentAlone::OwnContent)
    }

    /// Forgets the content `target` holds of its own under `keys` (found
    /// differing there): the next [`plan_own`](Self::plan_own) sends it again.
    pub fn forget_own(&mut self, data_type: DataType, target: &str, keys: &[String]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut drop = tx.prepare_cached("DELETE FROM target_content WHERE target = ?1 AND data_type = ?2 AND key = ?3").map_err(storage)?;
            if !keys.is_empty() {
                forget_digests(&tx, data_type).map_err(storage)?;
            }
            for key in keys {
                drop.execute(params![target, data_type.as_str(), key]).map_err(storage)?;
            }
        }
        tx.commit().map_err(storage)
    }

    /// Whether `target` holds content of its own under `key` (see [`plan_own`](Self::plan_own)).
    pub fn holds_own(&self, data_type: DataType, target: &str, key: &str) -> Result<bool, LedgerError> {
        self.conn
            .prepare_cached("SELECT 1 FROM target_content WHERE target = ?1 AND data_type = ?2 AND key = ?3")
            .and_then(|mut stmt| stmt.query_row(params![target, data_type.as_str(), key], |_| Ok(())).optional())
            .map(|found| found.is_some())
            .map_err(self.storage())
    }

    /// The targets holding content of their own of `data_type`, or with a
    /// send of it to them alone in doubt.
    pub fn own_content_targets(&self, data_type: DataType) -> Result<Vec<String>, LedgerError> {
        let sql = "SELECT target FROM target_content WHERE data_type = ?1 UNION SELECT target FROM own_reservation WHERE data_type = ?1";
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.storage())?;
        let rows = stmt.query_map([data_type.as_str()], |r| r.get::<_, String>(0)).map_err(self.storage())?;
        rows.collect::<Result<_, _>>().map_err(self.storage())
    }

    /// Per key, the highest version some targets alone were sent.
    /// Versions reserved for one target alone count: they may have left.
    fn sent_to_some(&self, data_type: DataType) -> Result<FxHashMap<String, u64>, LedgerError> {
        let sql = "SELECT key, max(version) FROM (SELECT key, version FROM target_version WHERE data_type = ?1 \
                   UNION ALL SELECT key, version FROM own_reservation WHERE data_type = ?1) GROUP BY key";
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.storage())?;
        let rows = stmt.query_map([data_type.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).map_err(self.storage())?;
        rows.collect::<Result<_, _>>().map_err(self.storage())
    }

    /// The highest version some targets alone were sent for one key.
    fn sent_to_some_of(&self, data_type: DataType, key: &str) -> Result<Option<u64>, LedgerError> {
        self.conn
            .prepare_cached(
                "SELECT max(version) FROM (SELECT version FROM target_version WHERE data_type = ?1 AND key = ?2 \
                 UNION ALL SELECT version FROM own_reservation WHERE data_type = ?1 AND key = ?2)",
            )
            .and_then(|mut stmt| stmt.query_row(params![data_type.as_str(), key], |r| r.get::<_, Option<i64>>(0)))
            .map(|v| v.map(|v| v as u64))
            .map_err(self.storage())
    }

    /// [`digest`](Self::digest) as an audience holds it.
    pub fn digest_for(&self, data_type: DataType, audience: Option<&str>) -> Result<Digest, LedgerError> {
        Ok(Digest::of(&self.entries_for(data_type, audience)?))
    }

    /// The version held for a key, with whether it is a tombstone.
    pub fn version_of(&self, data_type: DataType, key: &str) -> Result<Option<(u64, bool)>, LedgerError> {
        Ok(self.held(data_type, key)?.map(|h| (h.version, h.deleted)))
    }

    /// Keys whose reserved version is above the committed one: a run that
    /// failed may have left them anywhere between.
    pub fn in_doubt(&self, data_type: DataType) -> Result<u64, LedgerError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM reservation r LEFT JOIN ledger l ON l.data_type = r.data_type AND l.key = r.key \
                 WHERE r.data_type = ?1 AND r.version > coalesce(l.version, 0)",
                [data_type.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.storage())
    }

    /// Every person's lifelong unified id, by source id (see [`Identities`]).
    pub fn identities(&self) -> Result<Identities, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT source_id, unified_id FROM identity").map_err(self.storage())?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(self.storage())?;
        rows.collect::<Result<Identities, _>>().map_err(self.storage())
    }

    /// The unified id remembered for one source id, if any.
    pub fn unified_id(&self, source_id: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .prepare_cached("SELECT unified_id FROM identity WHERE source_id = ?1")
            .and_then(|mut stmt| stmt.query_row([source_id], |r| r.get(0)).optional())
            .map_err(self.storage())
    }

    /// Remembers what the merge of `state` learned about identities (see
    /// [`MergedState::learned_identities`]): the unified id of each source
    /// id and person key, so later merges keep it whichever record becomes
    /// primary, and whoever comes back.
    pub fn remember_identities(&mut self, state: &MergedState) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let storage = |source| LedgerError::Storage { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO identity (source_id, unified_id) VALUES (?1, ?2) \
                     ON CONFLICT (source_id) DO UPDATE SET unified_id = excluded.unified_id WHERE unified_id <> excluded.unified_id",
                )
                .map_err(storage)?;
            match &state.learned_identities {
                Some(learned) => {
                    for (identity, unified) in learned.expose() {
                        stmt.execute(params![identity.as_str(), unified.as_str()]).map_err(storage)?;
                    }
                }
                // Built in code: nothing says what is known already.
                None => {
                    for employee in state.employees.values() {
                        for source_id in &employee.source_ids {
                            stmt.execute(params![source_id.as_str(), employee.id.as_str()]).map_err(storage)?;
                        }
                    }
                }
            }
        }
        tx.commit().map_err(storage)
    }

    fn held(&self, data_type: DataType, key: &str) -> Result<Option<Held>, LedgerError> {
        self.conn
            .prepare_cached("SELECT version, hash, deleted FROM ledger WHERE data_type = ?1 AND key = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![data_type.as_str(), key], |r| {
                    Ok(Held { version: r.get::<_, i64>(0)? as u64, hash: hash_from_blob(r.get(1)?), deleted: r.get::<_, i64>(2)? != 0 })
                })
                .optional()
            })
            .map_err(self.storage())
    }

    /// What the targets hold of a key, as far as a plan needs it to say what
    /// a change does (an employee's status and org unit, whether a grant is
    /// in force); `None` for keys not held live and for other data types.
    pub fn standing(&self, data_type: DataType, key: &str) -> Result<Option<Standing>, LedgerError> {
        self.conn
            .prepare_cached("SELECT state, place FROM standing WHERE data_type = ?1 AND key = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![data_type.as_str(), key], |r| {
                    Ok(Standing { state: r.get::<_, String>(0)?.into(), place: r.get::<_, Option<String>>(1)?.map(Into::into) })
                })
                .optional()
            })
            .map_err(self.storage())
    }

    /// Appends an entry to the audit log: who (`actor`: a caller's name, an
    /// operator, the hub itself) did what (`action`: `run`, `realtime`,
    /// `approve`, ...), with details that must hold nothing sensitive. The
    /// log is only ever appended to.
    pub fn audit(&mut self, actor: &str, action: &str, detail: &serde_json::Value) -> Result<(), LedgerError> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.conn
            .prepare_cached("INSERT INTO audit (at, actor, action, detail) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut stmt| stmt.execute(params![at, actor, action, detail.to_string()]))
            .map(drop)
            .map_err(self.storage())
    }

    /// The audit log's entries from `since` on (all when `None`), oldest first.
    pub fn audit_entries(&self, since: Option<chrono::DateTime<chrono::Utc>>) -> Result<Vec<AuditEntry>, LedgerError> {
        let since = since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).unwrap_or_default();
        let mut stmt = self.conn.prepare_cached("SELECT seq, at, actor, action, detail FROM audit WHERE at >= ?1 ORDER BY seq").map_err(self.storage())?;
        let rows = stmt.query_map([since], audit_entry).map_err(self.storage())?;
        rows.collect::<Result<_, _>>().map_err(self.storage())
    }

    /// The last `limit` entries of the audit log, oldest first; only those
    /// whose action is `action` when given (`run`, `approve`, ...). Reads
    /// those entries alone, however long the log.
    pub fn latest_audit_entries(&self, limit: usize, action: Option<&str>) -> Result<Vec<AuditEntry>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One statement per case, so that one action's entries are found through the index on (action, seq).
        let sql = match action {
            Some(_) => "SELECT seq, at, actor, action, detail FROM audit WHERE action = ?2 ORDER BY seq DESC LIMIT ?1",
            None => "SELECT seq, at, actor, action, detail FROM audit WHERE ?2 IS NULL ORDER BY seq DESC LIMIT ?1",
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.storage())?;
        let rows = stmt.query_map(rusqlite::params![limit, action], audit_entry).map_err(self.storage())?;
        let mut entries = rows.collect::<Result<Vec<_>, _>>().map_err(self.storage())?;
        entries.reverse();
        Ok(entries)
    }

    /// The highest version this ledger ever gave `key` (committed, reserved
    /// or sent to some targets alone; 0 if none): a target holding a version above it holds
    /// something this ledger never sent.
    pub fn highest_issued(&self, data_type: DataType, key: &str) -> Result<u64, LedgerError> {
        let committed = self.held(data_type, key)?.map_or(0, |h| h.version);
        let sent_to_some = self.sent_to_some_of(data_type, key)?.unwrap_or(0);
        Ok(committed.max(self.reserved(data_type, key)?.unwrap_or(0)).max(sent_to_some))
    }

    /// How many live (not deleted) records of `data_type` the ledger holds:
    /// what a repair's deletes are measured against, whatever a target claims.
    pub fn live_records(&self, data_type: DataType) -> Result<u64, LedgerError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM ledger WHERE data_type = ?1 AND deleted = 0")
            .and_then(|mut stmt| stmt.query_row([data_type.as_str()], |r| r.get::<_, i64>(0)))
            .map(|v| v.max(0) as u64)
            .map_err(self.storage())
    }

    fn reserved(&self, data_type: DataType, key: &str) -> Result<Option<u64>, LedgerError> {
        self.conn
            .prepare_cached("SELECT version FROM reservation WHERE data_type = ?1 AND key = ?2")
            .and_then(|mut stmt| stmt.query_row(params![data_type.as_str(), key], |r| r.get::<_, i64>(0)).optional())
            .map(|v| v.map(|v| v as u64))
            .map_err(self.storage())
    }

    fn reservations(&self, data_type: DataType) -> Result<FxHashMap<String, u64>, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT key, version FROM reservation WHERE data_type = ?1").map_err(self.storage())?;
        let rows = stmt.query_map([data_type.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))).map_err(self.storage())?;
        rows.collect::<Result<_, _>>().map_err(self.storage())
    }
}

/// Forgets the remembered digests of `data_type`: called in every
/// transaction that writes what they are computed from.
fn forget_digests(tx: &rusqlite::Transaction<'_>, data_type: DataType) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM remembered_digest WHERE data_type = ?1")?.execute([data_type.as_str()]).map(drop)
}

/// Whether `table` (one of the ledger's, named by the code, never by input)
/// holds any row of `data_type`.
fn holds_any(tx: &rusqlite::Transaction<'_>, table: &str, data_type: DataType) -> rusqlite::Result<bool> {
    // Cached: a real-time change commits one key, and this runs for each of its commits.
    tx.prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE data_type = ?1)"))?.query_row(params![data_type.as_str()], |r| r.get(0))
}

/// Records a plan's serializing thread hands over at once, and how many such
/// chunks may wait: what bounds the records held beside the delta.
const PLAN_CHUNK: usize = 1024;
const PLAN_CHUNKS_IN_FLIGHT: usize = 4;

/// How many changes of a delta planned from a merged state keep the
/// payloads the plan made (about 12 MB of employees): a run of that size
/// sends them as they are; beyond it, the rest are made again as they are
/// sent, so a run never holds them all.
pub const PAYLOADS_KEPT: usize = 20_000;

/// One chunk of a data type's record keys and content hashes, in key order.
type HashedChunk<'a> = Vec<(&'a str, ContentHash)>;

/// Serializes and hashes every record of `data_type` into `chunks`, in key
/// order, until done, until a record cannot be serialized (that error is
/// the last thing sent), or until the planner stops reading.
fn serialize_and_hash<'a>(state: &'a MergedState, data_type: DataType, chunks: &std::sync::mpsc::SyncSender<Result<HashedChunk<'a>, serde_json::Error>>) {
    let mut chunk = Vec::with_capacity(PLAN_CHUNK);
    let hashed = state.hash_each(data_type, |key, hash| {
        chunk.push((key, hash));
        if chunk.len() < PLAN_CHUNK {
            return ControlFlow::Continue(());
        }
        match chunks.send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(PLAN_CHUNK)))) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    });
    // The records hashed before a failure go first: the planner stops at the error.
    if !chunk.is_empty() {
        let _ = chunks.send(Ok(chunk));
    }
    if let Err(source) = hashed {
        let _ = chunks.send(Err(source));
    }
}

/// A planned record's JSON, made only if the plan sends it: a periodic run
/// sends about one record in a hundred, and the others are never copied out
/// of the buffer they were hashed in.
trait Payload {
    /// Whether the delta keeps the payload (else it is made again to be sent).
    const KEPT: bool;
    fn into_json(self) -> Result<Box<RawValue>, serde_json::Error>;
}

impl Payload for Box<RawValue> {
    const KEPT: bool = true;
    fn into_json(self) -> Result<Box<RawValue>, serde_json::Error> {
        Ok(self)
    }
}

/// A merged state's record, serialized again if the plan sends it (to the
/// same bytes its hash was taken of: serialization is deterministic).
struct StateRecord<'a> {
    state: &'a MergedState,
    data_type: DataType,
    key: &'a str,
}

impl Payload for StateRecord<'_> {
    const KEPT: bool = false;
    fn into_json(self) -> Result<Box<RawValue>, serde_json::Error> {
        // The key was read from this state, which cannot change while it is borrowed.
        self.state.record(self.data_type, self.key).expect("a key read from the merged state is in it")
    }
}

/// The ledger's rows of one data type in key order, read one at a time
/// into a reused key buffer: a plan visits every row and keeps few.
struct HeldRows<'s> {
    rows: rusqlite::Rows<'s>,
    /// The current row's key (meaningful while `held` is `Some`).
    key: String,
    /// The current row, `None` once all are read.
    held: Option<Held>,
}

impl HeldRows<'_> {
    fn advance(&mut self) -> rusqlite::Result<()> {
        let Some(row) = self.rows.next()? else {
            self.held = None;
            return Ok(());
        };
        use rusqlite::types::{Type, ValueRef};
        let version = row.get::<_, i64>(1)? as u64;
        // The same cells `hash_from_blob` accepts: a blob (of the wrong length: no hash) or null.
        let hash = match row.get_ref(2)? {
            ValueRef::Blob(blob) => blob.try_into().ok().map(ContentHash),
            ValueRef::Null => None,
            other => return Err(rusqlite::Error::InvalidColumnType(2, "hash".into(), other.data_type())),
        };
        let deleted = row.get::<_, i64>(3)? != 0;
        let key = match row.get_ref(0)? {
            ValueRef::Text(text) => std::str::from_utf8(text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?,
            other => return Err(rusqlite::Error::InvalidColumnType(0, "key".into(), other.data_type())),
        };
        self.key.clear();
        self.key.push_str(key);
        self.held = Some(Held { version, hash, deleted });
        Ok(())
    }

    /// The current row, if its key sorts before `key`.
    fn before(&self, key: &str) -> Option<Held> {
        self.held.filter(|_| self.key.as_str() < key)
    }

    /// The current row, if its key is `key`.
    fn at(&self, key: &str) -> Option<Held> {
        self.held.filter(|_| self.key == key)
    }
}

/// One plan in progress: the decisions per key, shared by full and real-time plans.
struct Planner<'a> {
    data_type: DataType,
    origin: &'a str,
    hold: Option<&'a HeldBack>,
    /// Reserved versions of the keys not yet visited.
    reserved: FxHashMap<String, u64>,
    /// The highest versions repairs sent some targets alone, by key: the
    /// next version of the key must be above them too.
    sent_to_some: FxHashMap<String, u64>,
    delta: Delta,
    /// Live records in the ledger among those visited.
    live: u64,
    /// Deletes of live records (what the delete guard limits).
    guarded_deletes: u64,
}

impl Planner<'_> {
    /// The next version for a key, and whether a failed run may have left
    /// other content at a reserved version above the committed one.
    fn next_version(&mut self, key: &str, prior: Option<Held>) -> (u64, bool) {
        let committed = prior.map(|h| h.version).unwrap_or(0);
        let reserved = self.reserved.remove(key).unwrap_or(0);
        let sent_to_some = self.sent_to_some.remove(key).unwrap_or(0);
        // Saturating: a version past MAX_VERSION is then refused by `Delta::push`, never wrapped to 0.
        (committed.max(reserved).max(sent_to_some).saturating_add(1), reserved > committed)
    }

    /// A key present in the source, with its content's hash; its payload
    /// is made only if it is sent, and kept only if the payload source says
    /// so (a merged state's record is made again when it travels).
    fn present_hashed<P: Payload>(&mut self, key: &str, hash: ContentHash, payload: P, prior: Option<Held>) -> Result<(), LedgerError> {
        let (version, in_doubt) = self.next_version(key, prior);
        let live = matches!(prior, Some(Held { deleted: false, .. }));
        self.live += live as u64;
        if live && prior.and_then(|h| h.hash) == Some(hash) && !in_doubt {
            self.delta.unchanged += 1;
            return Ok(());
        }
        let payload = payload.into_json().map_err(|source| LedgerError::Encode { data_type: self.data_type, source })?;
        let change = ChangeEnvelope::with_raw_payload(self.data_type, key.to_string(), version, self.origin, Some(payload));
        if self.delta.push(change, Some(hash), !live)? {
            *(if live { &mut self.delta.updated } else { &mut self.delta.created }) += 1;
            self.delta.retried += in_doubt as u64;
            if !P::KEPT && self.delta.changes.len() > PAYLOADS_KEPT {
                // Both are made again when the change is sent (`Delta::envelopes`).
                let change = self.delta.changes.last_mut().expect("just pushed");
                (change.payload, change.event_id) = (None, String::new());
            }
        }
        Ok(())
    }

    /// A key the ledger holds (or reserved) that the source no longer has.
    fn vanished(&mut self, key: String, prior: Option<Held>) -> Result<(), LedgerError> {
        let (version, in_doubt) = self.next_version(&key, prior);
        let live = prior.is_some_and(|h| !h.deleted);
        if !live && !in_doubt {
            // Unknown, or already deleted everywhere: nothing to do.
            self.delta.unchanged += prior.is_some() as u64;
            return Ok(());
        }
        self.live += live as u64;
        if let Some(quarantined) = self.hold.and_then(|h| h.holds(self.data_type, &key)) {
            let version = prior.map(|h| h.version).unwrap_or_default();
            self.delta.held_back.push(HeldRecord { data_type: self.data_type, key, version, quarantined: quarantined.clone() });
            return Ok(());
        }
        if self.delta.push(ChangeEnvelope::delete(self.data_type, key, version, self.origin), None, false)? {
            self.guarded_deletes += live as u64;
            self.delta.deleted += 1;
            self.delta.retried += in_doubt as u64;
        }
        Ok(())
    }

    /// Retracts what failed runs may have created under keys that neither
    /// the ledger nor the source has, and applies the delete guard.
    fn finish(mut self, allow_mass_delete: bool, max_share: f64) -> Result<Delta, LedgerError> {
        let mut orphans: Vec<String> = self.reserved.keys().cloned().collect();
        orphans.sort_unstable();
        for key in orphans {
            self.vanished(key, None)?;
        }
        if !allow_mass_delete && self.guarded_deletes as f64 > max_share * self.live as f64 {
            return Err(LedgerError::DeleteGuard { data_type: self.data_type, deletes: self.guarded_deletes, live: self.live, max_share });
        }
        Ok(self.delta)
    }
}
