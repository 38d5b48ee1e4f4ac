//! A [`Sink`] on an SQLite file: the target systems' store.

use crate::digest::DigestEntry;
use crate::envelope::{ChangeEnvelope, Operation};
use crate::schema::DataType;
use crate::sink::{canonical_bodies, content_of, ApplyOutcome, KeptLetter, Sink, SinkError, StoredRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A target system's SQLite database: one table per data type, each with
/// `id TEXT PRIMARY KEY, version INTEGER, deleted INTEGER, body TEXT`.
///
/// A batch is one transaction; each change is a single
/// `INSERT … ON CONFLICT DO UPDATE … WHERE excluded.version > version`,
/// so the version rule is enforced by the database itself. Table
/// `hr_applied_at` keeps, per data type, when a batch last applied a change
/// of it ([`SqliteSink::last_applied`]).
#[derive(Clone)]
pub struct SqliteSink {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
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
        Ok(SqliteSink { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record held for a key.
    pub fn get(&self, data_type: DataType, key: &str) -> Result<Option<StoredRecord>, SinkError> {
        let conn = self.lock();
        conn.query_row(&format!("SELECT version, deleted, body FROM {data_type} WHERE id = ?1"), [key], |row| {
            Ok(StoredRecord { version: row.get::<_, i64>(0)? as u64, deleted: row.get::<_, i64>(1)? != 0, body: row.get(2)? })
        })
        .optional()
        .map_err(|e| unavailable("cannot read", &self.path, e))
    }

    /// Live records of a data type.
    pub fn count(&self, data_type: DataType) -> Result<u64, SinkError> {
        let conn = self.lock();
        conn.query_row(&format!("SELECT count(*) FROM {data_type} WHERE deleted = 0"), [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| unavailable("cannot read", &self.path, e))
    }

    /// Whether it holds any row of a data type, a tombstone included:
    /// whether anything of that type ever reached it.
    pub fn holds_any(&self, data_type: DataType) -> Result<bool, SinkError> {
        let conn = self.lock();
        conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {data_type})"), [], |r| r.get::<_, bool>(0))
            .map_err(|e| unavailable("cannot read", &self.path, e))
    }

    /// The records its transport kept here instead of dead-lettering them
    /// (see [`KeptLetter`]), oldest first.
    pub fn kept_letters(&self) -> Result<Vec<KeptLetter>, SinkError> {
        let conn = self.lock();
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
        let conn = self.lock();
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
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| unavailable("cannot begin a transaction on", &self.path, e))?;
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A transaction that panicked was rolled back when dropped: the connection is consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply_blocking(&self, batch: &[ChangeEnvelope], bodies: &[Option<String>]) -> Result<ApplyOutcome, SinkError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| unavailable("cannot begin a transaction on", &self.path, e))?;
        let mut outcome = ApplyOutcome::default();
        let mut applied_types = Vec::with_capacity(1);
        {
            for (change, body) in batch.iter().zip(bodies) {
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
                    if !applied_types.contains(&change.data_type) {
                        applied_types.push(change.data_type);
                    }
                } else {
                    outcome.stale += 1;
                }
            }
        }
        stamp_applied(&tx, &applied_types).map_err(|e| unavailable("cannot write to", &self.path, e))?;
        tx.commit().map_err(|e| unavailable("cannot commit to", &self.path, e))?;
        Ok(outcome)
    }

    fn entries_blocking(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        let read_error = |e: rusqlite::Error| unavailable("cannot read", &self.path, e);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!("SELECT id, version, deleted, body FROM {data_type}")).map_err(read_error)?;
        let rows = stmt
            .query_map([], |row| {
                let key: String = row.get(0)?;
                let deleted = row.get::<_, i64>(2)? != 0;
                // Hashed as stored now: a hand edit of the body shows in the digest.
                let body: Option<String> = row.get(3)?;
                Ok(DigestEntry { content: content_of(deleted, body.as_deref()), version: row.get::<_, i64>(1)? as u64, key })
            })
            .map_err(read_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(read_error)
    }
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
        let sink = self.clone();
        let batch = batch.to_vec();
        tokio::task::spawn_blocking(move || sink.apply_blocking(&batch, &bodies))
            .await
            .map_err(|e| SinkError::Unavailable(format!("sqlite worker failed: {e}")))?
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        let sink = self.clone();
        tokio::task::spawn_blocking(move || sink.entries_blocking(data_type)).await.map_err(|e| SinkError::Unavailable(format!("sqlite worker failed: {e}")))?
    }

    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        let (sink, letter) = (self.clone(), letter.clone());
        tokio::task::spawn_blocking(move || {
            let conn = sink.lock();
            conn.execute(
                "INSERT INTO hr_kept_letters (source, key, reason, payload, kept_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![letter.source, letter.key, letter.reason, letter.payload, letter.kept_at.to_rfc3339()],
            )
            .map(|_| ())
            .map_err(|e| unavailable("cannot write", &sink.path, e))
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("sqlite worker failed: {e}")))?
    }
}
