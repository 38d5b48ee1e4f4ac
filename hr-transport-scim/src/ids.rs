//! What the transport knows of each key in each directory: the resource's
//! SCIM id (the directory's own), its ETag, the version and content hash
//! the hub sent, and the attributes last written, so a change is a PATCH of
//! what changed and reading back can tell a hand edit from the hub's state.

use crate::config::ScimTransportError;
use hr_core::{ContentHash, DataType};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// One key's resource in one directory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Known {
    /// The directory's id of the resource; `None` once deleted there.
    pub(crate) scim_id: Option<String>,
    pub(crate) etag: Option<String>,
    /// The version and content hash of the change last applied.
    pub(crate) version: u64,
    pub(crate) content: Option<ContentHash>,
    /// The attributes last written ([`crate::mapping::owned_user`]).
    pub(crate) owned: Value,
    /// What the directory was last seen holding instead, when someone
    /// changed it there: what the next write starts from.
    pub(crate) seen: Option<Value>,
    /// Employees: the org unit whose Group lists them.
    pub(crate) group: Option<String>,
    /// Employees: the manager's key, and whether the User names them yet.
    pub(crate) manager: Option<String>,
    pub(crate) manager_set: bool,
}

/// The id store: one SQLite file, every directory's keys.
pub(crate) struct IdStore {
    db: Mutex<Connection>,
    path: String,
}

impl IdStore {
    pub(crate) fn open(path: &Path) -> Result<Self, ScimTransportError> {
        let shown = path.display().to_string();
        let failed = |source| ScimTransportError::IdStore { path: shown.clone(), source };
        if path != Path::new(":memory:") {
            // Readable by its owner only, as the ledger beside it.
            hr_core::create_private(path).map_err(|source| ScimTransportError::IdStoreFile { path: shown.clone(), source })?;
        }
        let db = Connection::open(path).map_err(failed)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS scim_resources (
                target TEXT NOT NULL, data_type TEXT NOT NULL, key TEXT NOT NULL,
                scim_id TEXT, etag TEXT, version INTEGER NOT NULL, content BLOB, owned TEXT NOT NULL,
                grp TEXT, manager TEXT, manager_set INTEGER NOT NULL DEFAULT 0, seen TEXT,
                PRIMARY KEY (target, data_type, key));
             CREATE INDEX IF NOT EXISTS scim_by_id ON scim_resources (target, scim_id);",
        )
        .map_err(failed)?;
        Ok(IdStore { db: Mutex::new(db), path: shown })
    }

    fn failed(&self, source: rusqlite::Error) -> ScimTransportError {
        ScimTransportError::IdStore { path: self.path.clone(), source }
    }

    pub(crate) fn get(&self, target: &str, data_type: DataType, key: &str) -> Result<Option<Known>, ScimTransportError> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.query_row(
            "SELECT scim_id, etag, version, content, owned, grp, manager, manager_set, seen FROM scim_resources WHERE target = ?1 AND data_type = ?2 AND key = ?3",
            params![target, data_type.as_str(), key],
            known_of_row,
        )
        .optional()
        .map_err(|e| self.failed(e))
    }

    pub(crate) fn put(&self, target: &str, data_type: DataType, key: &str, known: &Known) -> Result<(), ScimTransportError> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.execute(
            "INSERT OR REPLACE INTO scim_resources (target, data_type, key, scim_id, etag, version, content, owned, grp, manager, manager_set, seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                target,
                data_type.as_str(),
                key,
                known.scim_id,
                known.etag,
                known.version as i64,
                known.content.map(|c| c.0.to_vec()),
                known.owned.to_string(),
                known.group,
                known.manager,
                known.manager_set,
                known.seen.as_ref().map(Value::to_string),
            ],
        )
        .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Every key of `data_type` known in `target`.
    pub(crate) fn all(&self, target: &str, data_type: DataType) -> Result<Vec<(String, Known)>, ScimTransportError> {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let mut statement = db
            .prepare(
                "SELECT scim_id, etag, version, content, owned, grp, manager, manager_set, seen, key FROM scim_resources WHERE target = ?1 AND data_type = ?2",
            )
            .map_err(|e| self.failed(e))?;
        let rows =
            statement.query_map(params![target, data_type.as_str()], |row| Ok((row.get::<_, String>(9)?, known_of_row(row)?))).map_err(|e| self.failed(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.failed(e))
    }

    /// Employees of `target` whose User does not name their manager yet.
    pub(crate) fn managers_pending(&self, target: &str) -> Result<Vec<(String, Known)>, ScimTransportError> {
        Ok(self.all(target, DataType::Employee)?.into_iter().filter(|(_, k)| k.manager.is_some() && !k.manager_set && k.scim_id.is_some()).collect())
    }
}

fn known_of_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Known> {
    let content: Option<Vec<u8>> = row.get(3)?;
    let owned: String = row.get(4)?;
    Ok(Known {
        scim_id: row.get(0)?,
        etag: row.get(1)?,
        version: row.get::<_, i64>(2)? as u64,
        content: content.and_then(|c| <[u8; 16]>::try_from(c.as_slice()).ok()).map(ContentHash),
        owned: serde_json::from_str(&owned).unwrap_or(Value::Null),
        group: row.get(5)?,
        manager: row.get(6)?,
        manager_set: row.get(7)?,
        seen: row.get::<_, Option<String>>(8)?.and_then(|s| serde_json::from_str(&s).ok()),
    })
}
