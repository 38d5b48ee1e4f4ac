//! A [`Sink`] on an SQLite file: the target systems' store.

use crate::digest::{Digest, DigestEntry};
use crate::envelope::{ChangeEnvelope, Operation};
use crate::schema::DataType;
use crate::sink::{canonical_bodies, content_of, ApplyOutcome, KeptLetter, Sink, SinkError, StoredRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use maintained::MaintainedDigests;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod maintained;

/// A target system's SQLite database: one table per data type, each with
/// `id TEXT PRIMARY KEY, version INTEGER, deleted INTEGER, body TEXT`.
///
/// A batch is one transaction; each change is a single
/// `INSERT … ON CONFLICT DO UPDATE … WHERE excluded.version > version`,
/// so the version rule is enforced by the database itself. Table
/// `hr_applied_at` keeps, per data type, when a batch last applied a change
/// of it ([`SqliteSink::last_applied`]).
///
/// # Digests
///
/// [`entries`](Sink::entries) reads and hashes every row as stored now.
/// [`bucket_digests`](Sink::bucket_digests) and [`digest`](Sink::digest)
/// do so once per data type, then keep the digests up to date as changes
/// are applied, so a comparison costs next to nothing however much the
/// store holds. They read everything again when another connection has
/// committed to the file since (a hand edit with `sqlite3`: SQLite's
/// `PRAGMA data_version`), when the last full read is older than
/// [`full_scan_every`](Self::full_scan_every) (default
/// [`DEFAULT_FULL_SCAN_EVERY`](Self::DEFAULT_FULL_SCAN_EVERY)), and after
/// [`rescan`](Sink::rescan).
#[derive(Clone)]
pub struct SqliteSink {
    store: Arc<Mutex<Store>>,
    path: PathBuf,
}

/// The connection and the digests maintained beside it, locked together:
/// a change is applied and recorded in the digests under one lock.
struct Store {
    conn: Connection,
    digests: MaintainedDigests,
}

impl std::fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSink").field("path", &self.path).finish()
    }
}

fn unavailable(context: &str, path: &Path, e: impl std::fmt::Display) -> SinkError {
    SinkError::Unavailable(format!("{context} {}: {e}", path.display()))
}

impl SqliteSink {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SinkError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| unavailable("cannot create the directory of", &path, e))?;
        }
        // HR data: readable by the system's own user only.
        crate::private_file::create_private(&path).map_err(|e| unavailable("cannot create", &path, e))?;
        let conn = Connection::open(&path).map_err(|e| unavailable("cannot open", &path, e))?;
        Self::init(conn, path)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn in_memory() -> Result<Self, SinkError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| unavailable("cannot open", &path, e))?;
        Self::init(conn, path)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, SinkError> {
        // WAL + NORMAL: a committed batch survives a process crash; fsync per
        // checkpoint rather than per transaction.
        let mut ddl = String::from("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;");
        for t in DataType::ALL {
            ddl.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, body TEXT);"
            ));
        }
        ddl.push_str("CREATE TABLE IF NOT EXISTS hr_applied_at (data_type TEXT PRIMARY KEY, unix_ms INTEGER NOT NULL);");
        ddl.push_str(
            "CREATE TABLE IF NOT EXISTS hr_kept_letters (seq INTEGER PRIMARY KEY, source TEXT NOT NULL, key TEXT, reason TEXT NOT NULL, payload BLOB NOT NULL, kept_at TEXT NOT NULL);",
        );
        conn.execute_batch(&ddl).map_err(|e| unavailable("cannot create tables in", &path, e))?;
        let store = Store { conn, digests: MaintainedDigests::new(Self::DEFAULT_FULL_SCAN_EVERY) };
        Ok(SqliteSink { store: Arc::new(Mutex::new(store)), path })
    }

    /// How often digests read the whole store at the least, by default:
    /// what changes the file without SQLite telling (a restored backup
    /// copied over it) shows within this time.
    pub const DEFAULT_FULL_SCAN_EVERY: Duration = Duration::from_secs(3600);

    /// Sets how old the last full read of a data type may be before its
    /// digest reads everything again (see *Digests* above); `Duration::ZERO`
    /// reads everything for every digest. Clones share the setting, as they
    /// share the store.
    pub fn full_scan_every(self, every: Duration) -> Self {
        self.lock().digests.set_full_scan_every(every);
        self
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record held for a key.
    pub fn get(&self, data_type: DataType, key: &str) -> Result<Option<StoredRecord>, SinkError> {
        let store = self.lock();
        let conn = &store.conn;
        conn.query_row(&format!("SELECT version, deleted, body FROM {data_type} WHERE id = ?1"), [key], |row| {
            Ok(StoredRecord { version: row.get::<_, i64>(0)? as u64, deleted: row.get::<_, i64>(1)? != 0, body: row.get(2)? })
        })
        .optional()
        .map_err(|e| unavailable("cannot read", &self.path, e))
    }

    /// Live records of a data type.
    pub fn count(&self, data_type: DataType) -> Result<u64, SinkError> {
        let store = self.lock();
        let conn = &store.conn;
        conn.query_row(&format!("SELECT count(*) FROM {data_type} WHERE deleted = 0"), [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| unavailable("cannot read", &self.path, e))
    }

    /// Whether it holds any row of a data type, a tombstone included:
    /// whether anything of that type ever reached it.
    pub fn holds_any(&self, data_type: DataType) -> Result<bool, SinkError> {
        let store = self.lock();
        let conn = &store.conn;
        conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {data_type})"), [], |r| r.get::<_, bool>(0))
            .map_err(|e| unavailable("cannot read", &self.path, e))
    }

    /// The records its transport kept here instead of dead-lettering them
    /// (see [`KeptLetter`]), oldest first.
    pub fn kept_letters(&self) -> Result<Vec<KeptLetter>, SinkError> {
        let store = self.lock();
        let conn = &store.conn;
        let read = |e| unavailable("cannot read", &self.path, e);
        let mut query = conn.prepare("SELECT source, key, reason, payload, kept_at FROM hr_kept_letters ORDER BY seq").map_err(read)?;
        let rows = query
            .query_map([], |r| {
                let kept_at: String = r.get(4)?;
                Ok(KeptLetter { source: r.get(0)?, key: r.get(1)?, reason: r.get(2)?, payload: r.get(3)?, kept_at: kept_at.parse().unwrap_or_default() })
            })
            .map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }

    /// When a change of `data_type` was last applied here (stale changes do
    /// not count), by this process or an earlier one; `None` if never.
    pub fn last_applied(&self, data_type: DataType) -> Result<Option<DateTime<Utc>>, SinkError> {
        let store = self.lock();
        let conn = &store.conn;
        let unix_ms: Option<i64> = conn
            .query_row("SELECT unix_ms FROM hr_applied_at WHERE data_type = ?1", [data_type.as_str()], |r| r.get(0))
            .optional()
            .map_err(|e| unavailable("cannot read", &self.path, e))?;
        Ok(unix_ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Removes every row of `data_type` whose key `keep` rejects, in one
    /// transaction, and returns how many: for records the system must no
    /// longer hold at all (grants for another system, once its scope
    /// narrowed), which a tombstone would still name.
    pub fn retain(&self, data_type: DataType, keep: impl Fn(&str) -> bool) -> Result<usize, SinkError> {
        let mut guard = self.lock();
        let store = &mut *guard;
        // Whatever happens below, this type is read whole next time.
        store.digests.forget(data_type);
        let tx = store.conn.transaction().map_err(|e| unavailable("cannot begin a transaction on", &self.path, e))?;
        let keys: Vec<String> = {
            let mut query = tx.prepare(&format!("SELECT id FROM {data_type}")).map_err(|e| unavailable("cannot read", &self.path, e))?;
            let rows = query.query_map([], |r| r.get::<_, String>(0)).map_err(|e| unavailable("cannot read", &self.path, e))?;
            rows.collect::<Result<_, _>>().map_err(|e| unavailable("cannot read", &self.path, e))?
        };
        let mut removed = 0;
        for key in keys.iter().filter(|k| !keep(k)) {
            removed += tx.execute(&format!("DELETE FROM {data_type} WHERE id = ?1"), [key]).map_err(|e| unavailable("cannot write", &self.path, e))?;
        }
        tx.commit().map_err(|e| unavailable("cannot commit to", &self.path, e))?;
        Ok(removed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(store) => store,
            Err(poisoned) => {
                // A transaction that panicked was rolled back when dropped, but
                // a panic between a commit and its recording in the digests
                // would leave them behind the store: read everything again.
                let mut store = poisoned.into_inner();
                store.digests.forget_all();
                self.store.clear_poison();
                store
            }
        }
    }

    fn apply_blocking(&self, batch: &[ChangeEnvelope], bodies: &[Option<String>]) -> Result<ApplyOutcome, SinkError> {
        let mut store = self.lock();
        let tx = store.conn.transaction().map_err(|e| unavailable("cannot begin a transaction on", &self.path, e))?;
        let mut outcome = ApplyOutcome::default();
        let mut applied = Vec::with_capacity(batch.len());
        for (index, (change, body)) in batch.iter().zip(bodies).enumerate() {
            let table = change.data_type.as_str();
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO {table} (id, version, deleted, body) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(id) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, body = excluded.body \
                     WHERE excluded.version > {table}.version"
                ))
                .map_err(|e| unavailable("cannot prepare a write on", &self.path, e))?;
            let changed = stmt
                .execute(params![change.key, change.version as i64, (change.op == Operation::Delete) as i64, body])
                .map_err(|e| unavailable("cannot write to", &self.path, e))?;
            if changed == 1 {
                outcome.applied += 1;
                applied.push(index);
            } else {
                outcome.stale += 1;
            }
        }
        let mut applied_types: Vec<DataType> = applied.iter().map(|&i| batch[i].data_type).collect();
        applied_types.sort_unstable();
        applied_types.dedup();
        stamp_applied(&tx, &applied_types).map_err(|e| unavailable("cannot write to", &self.path, e))?;
        if let Err(e) = tx.commit() {
            // A commit that reports failure may still have reached the file: read these types whole next time.
            applied_types.iter().for_each(|t| store.digests.forget(*t));
            return Err(unavailable("cannot commit to", &self.path, e));
        }
        // Recorded once committed: a batch rolled back leaves the digests as they were.
        let digests = &mut store.digests;
        for index in applied {
            let change = &batch[index];
            if !digests.maintains(change.data_type) {
                continue;
            }
            let content = content_of(change.op == Operation::Delete, bodies[index].as_deref());
            digests.applied(change.data_type, &change.key, change.version, content);
        }
        Ok(outcome)
    }

    fn entries_blocking(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        scan(&self.lock().conn, data_type).map_err(|e| unavailable("cannot read", &self.path, e))
    }

    fn bucket_digests_blocking(&self, data_type: DataType) -> Result<Vec<Digest>, SinkError> {
        let read_error = |e: rusqlite::Error| unavailable("cannot read", &self.path, e);
        let mut store = self.lock();
        // Read before the scan: a commit by another connection during it shows at the next digest.
        let data_version: i64 = store.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(read_error)?;
        if let Some(buckets) = store.digests.current(data_type, data_version) {
            return Ok(buckets);
        }
        let entries = scan(&store.conn, data_type).map_err(read_error)?;
        Ok(store.digests.scanned(data_type, data_version, entries))
    }

    /// Runs `work` on the blocking pool: SQLite calls block.
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&SqliteSink) -> Result<T, SinkError> + Send + 'static) -> Result<T, SinkError> {
        let sink = self.clone();
        tokio::task::spawn_blocking(move || work(&sink)).await.map_err(|e| SinkError::Unavailable(format!("sqlite worker failed: {e}")))?
    }
}

/// Every row of `data_type`, hashed as stored now: a hand edit of a body shows.
fn scan(conn: &Connection, data_type: DataType) -> rusqlite::Result<Vec<DigestEntry>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT id, version, deleted, body FROM {data_type}"))?;
    let rows = stmt.query_map([], |row| {
        let deleted = row.get::<_, i64>(2)? != 0;
        let body: Option<String> = row.get(3)?;
        Ok(DigestEntry { content: content_of(deleted, body.as_deref()), version: row.get::<_, i64>(1)? as u64, key: row.get(0)? })
    })?;
    rows.collect()
}

/// Records now as the time `data_types` were last applied, in the batch's transaction.
fn stamp_applied(tx: &rusqlite::Transaction<'_>, data_types: &[DataType]) -> rusqlite::Result<()> {
    let now = Utc::now().timestamp_millis();
    for t in data_types {
        tx.prepare_cached("INSERT INTO hr_applied_at (data_type, unix_ms) VALUES (?1, ?2) ON CONFLICT(data_type) DO UPDATE SET unix_ms = excluded.unix_ms")?
            .execute(params![t.as_str(), now])?;
    }
    Ok(())
}

#[async_trait]
impl Sink for SqliteSink {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        let bodies = canonical_bodies(batch)?;
        let batch = batch.to_vec();
        self.blocking(move |sink| sink.apply_blocking(&batch, &bodies)).await
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.blocking(move |sink| sink.entries_blocking(data_type)).await
    }

    async fn bucket_digests(&self, data_type: DataType) -> Result<Vec<Digest>, SinkError> {
        self.blocking(move |sink| sink.bucket_digests_blocking(data_type)).await
    }

    async fn rescan(&self) -> Result<(), SinkError> {
        // The lock is held through whole batches and full reads: wait for it off the async threads.
        self.blocking(|sink| {
            sink.lock().digests.forget_all();
            Ok(())
        })
        .await
    }

    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        let letter = letter.clone();
        self.blocking(move |sink| {
            sink.lock()
                .conn
                .execute(
                    "INSERT INTO hr_kept_letters (source, key, reason, payload, kept_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![letter.source, letter.key, letter.reason, letter.payload, letter.kept_at.to_rfc3339()],
                )
                .map(|_| ())
                .map_err(|e| unavailable("cannot write", &sink.path, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::MasterData;

    fn md(code: &str, name: &str, version: u64) -> ChangeEnvelope {
        let m = MasterData { set: "grade".into(), code: code.into(), name: name.into(), attributes: Default::default() };
        ChangeEnvelope::upsert(DataType::MasterData, m.key(), version, "test", &m).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    /// What a full read of the store gives now.
    fn read_whole(sink: &SqliteSink) -> Digest {
        Digest::of(&sink.entries_blocking(DataType::MasterData).unwrap())
    }

    /// Changes SQLite cannot report: written through the sink's own
    /// connection, as a file copied over the store would be.
    fn edit_unreported(sink: &SqliteSink, sql: &str) {
        sink.lock().conn.execute(sql, []).unwrap();
    }

    #[test]
    fn digests_are_maintained_until_a_rescan_or_the_full_scan_interval() {
        block_on(async {
            let sink = SqliteSink::in_memory().unwrap();
            sink.apply(&[md("G1", "Staff", 1), md("G2", "Lead", 1)]).await.unwrap();
            let first = sink.digest(DataType::MasterData).await.unwrap();
            assert_eq!(first, read_whole(&sink));

            // An edit the digests cannot see, then changes applied: a digest
            // that read the store again would show the edit; maintained, it shows only the changes.
            edit_unreported(&sink, "UPDATE master_data SET body = replace(body, 'Lead', 'Unseen') WHERE id = 'grade:G2'");
            let second = [md("G1", "Staff+", 2), md("G3", "Head", 1), md("G2", "older", 1)];
            sink.apply(&second).await.unwrap();
            let reference = crate::MemorySink::default();
            reference.apply(&[md("G1", "Staff", 1), md("G2", "Lead", 1)]).await.unwrap();
            reference.apply(&second).await.unwrap();
            let applied = sink.digest(DataType::MasterData).await.unwrap();
            assert_eq!(applied, reference.digest(DataType::MasterData).await.unwrap(), "changes applied are in the maintained digests");
            assert_ne!(applied, read_whole(&sink), "the store was not read again");
            assert_eq!(applied.count, 3);
            sink.rescan().await.unwrap();
            let applied = sink.digest(DataType::MasterData).await.unwrap();
            assert_eq!(applied, read_whole(&sink));

            edit_unreported(&sink, "UPDATE master_data SET body = replace(body, 'Head', 'Tampered') WHERE id = 'grade:G3'");
            assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), applied, "answered from the maintained digests, without reading the store");
            sink.rescan().await.unwrap();
            let rescanned = sink.digest(DataType::MasterData).await.unwrap();
            assert_ne!(rescanned, applied, "a rescan reads the edit");
            assert_eq!(rescanned, read_whole(&sink));

            edit_unreported(&sink, "DELETE FROM master_data WHERE id = 'grade:G1'");
            let sink = sink.full_scan_every(Duration::ZERO);
            assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), read_whole(&sink), "a full read is due at every digest");
        });
    }

    #[test]
    fn a_panic_while_the_store_is_locked_sends_the_next_digest_to_a_full_read() {
        block_on(async {
            let sink = SqliteSink::in_memory().unwrap();
            sink.apply(&[md("G1", "Staff", 1)]).await.unwrap();
            let before = sink.digest(DataType::MasterData).await.unwrap();
            edit_unreported(&sink, "UPDATE master_data SET body = replace(body, 'Staff', 'Tampered')");
            let held = sink.clone();
            // As a panic between a commit and its recording in the digests would.
            assert!(std::thread::spawn(move || {
                let _store = held.lock();
                panic!("a panic while the store is locked");
            })
            .join()
            .is_err());
            let after = sink.digest(DataType::MasterData).await.unwrap();
            assert_ne!(after, before);
            assert_eq!(after, read_whole(&sink));
        });
    }

    #[test]
    fn a_shared_store_behind_its_scope_answers_and_rescans_through_both_wrappers() {
        block_on(async {
            let sink = Arc::new(SqliteSink::in_memory().unwrap());
            sink.apply(&[md("G1", "Staff", 1), md("G2", "Lead", 1)]).await.unwrap();
            let scoped = crate::ScopedSink::new(sink.clone(), crate::RoutingPolicy::default().scope("erp"));
            let before = scoped.digest(DataType::MasterData).await.unwrap();
            assert_eq!(before, read_whole(&sink));
            assert_eq!(scoped.bucket_digests(DataType::MasterData).await.unwrap(), Digest::buckets(&sink.entries_blocking(DataType::MasterData).unwrap()));
            edit_unreported(&sink, "UPDATE master_data SET body = replace(body, 'Staff', 'Tampered')");
            assert_eq!(scoped.digest(DataType::MasterData).await.unwrap(), before, "answered as maintained");
            scoped.rescan().await.unwrap();
            let after = scoped.digest(DataType::MasterData).await.unwrap();
            assert_ne!(after, before, "the rescan reached the store");
            assert_eq!(after, read_whole(&sink));
        });
    }

    #[test]
    fn removing_rows_outside_a_change_ends_maintenance_until_the_next_full_read() {
        block_on(async {
            let sink = SqliteSink::in_memory().unwrap();
            sink.apply(&[md("G1", "Staff", 1), md("G2", "Lead", 1), md("G3", "Head", 1)]).await.unwrap();
            sink.digest(DataType::MasterData).await.unwrap();
            assert_eq!(sink.retain(DataType::MasterData, |key| key.ends_with("G1")).unwrap(), 2);
            let after = sink.digest(DataType::MasterData).await.unwrap();
            assert_eq!((after, after.count), (read_whole(&sink), 1));
            let kept: Vec<String> = sink.entries_blocking(DataType::MasterData).unwrap().into_iter().map(|e| e.key).collect();
            assert_eq!(kept, ["grade:G1"]);
        });
    }

    #[test]
    fn a_rolled_back_batch_leaves_the_maintained_digests_as_they_were() {
        block_on(async {
            let sink = SqliteSink::in_memory().unwrap();
            sink.apply(&[md("G1", "Staff", 1)]).await.unwrap();
            let before = sink.digest(DataType::MasterData).await.unwrap();
            // A trigger refuses the batch's second row: SQLite rolls the whole batch back.
            edit_unreported(&sink, "CREATE TRIGGER refuse BEFORE INSERT ON master_data WHEN NEW.id = 'grade:G9' BEGIN SELECT RAISE(ABORT, 'refused'); END");
            assert!(sink.apply(&[md("G1", "Staff+", 2), md("G9", "x", 1)]).await.is_err());
            assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), before);
            assert_eq!(before, read_whole(&sink));
        });
    }
}
