//! The sink contract on both sinks this crate ships, for what the property
//! tests leave open: equal versions, invalid batches, counts, redaction.
use hr_core::{validate_batch, ChangeEnvelope, DataType, MasterData, MemorySink, Sink, SinkError, SqliteSink, StoredRecord};
use std::sync::Arc;

fn md(code: &str, name: &str, version: u64) -> ChangeEnvelope {
    let m = MasterData { set: "grade".into(), code: code.into(), name: name.into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, m.key(), version, "test", &m).unwrap()
}

/// An upsert without a payload: well-formed JSON, but against the schema.
fn invalid(code: &str) -> ChangeEnvelope {
    let mut change = md(code, "x", 1);
    change.payload = None;
    change
}

fn sinks(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Sink>)> {
    vec![("memory", Arc::new(MemorySink::default())), ("sqlite", Arc::new(SqliteSink::open(dir.join("nested/dirs/sink.sqlite3")).unwrap()))]
}

#[tokio::test]
async fn an_equal_version_is_stale_even_with_other_content() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in sinks(dir.path()) {
        let first = sink.apply(&[md("G1", "one", 2), md("G2", "two", 1)]).await.unwrap();
        assert_eq!((first.applied, first.stale), (2, 0), "{name}");
        let again = sink.apply(&[md("G1", "other", 2), md("G2", "two", 1), md("G2", "older", 1)]).await.unwrap();
        assert_eq!((again.applied, again.stale), (0, 3), "{name}: every change at a held version is stale");
        let held: Vec<_> = sink.entries(DataType::MasterData).await.unwrap();
        let reference = MemorySink::default();
        reference.apply(&[md("G1", "one", 2), md("G2", "two", 1)]).await.unwrap();
        assert_eq!(held, reference.entries(DataType::MasterData).await.unwrap(), "{name}: the first content stays");
    }
}

#[tokio::test]
async fn an_invalid_change_refuses_the_whole_batch_naming_its_position() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sink) in sinks(dir.path()) {
        let err = sink.apply(&[md("G1", "one", 1), invalid("G2")]).await.unwrap_err();
        assert!(matches!(err, SinkError::Invalid { index: 1, .. }), "{name}: {err}");
        assert!(sink.entries(DataType::MasterData).await.unwrap().is_empty(), "{name}: nothing of the batch applied");
    }
    assert!(matches!(validate_batch(&[md("G1", "one", 1), invalid("G2")]), Err(SinkError::Invalid { index: 1, .. })));
    assert!(validate_batch(&[md("G1", "one", 1)]).is_ok());
}

#[tokio::test]
async fn counts_and_lookups_see_what_was_applied() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteSink::open(dir.path().join("a/b/c.sqlite3")).unwrap();
    sqlite.apply(&[md("G1", "one", 1), md("G2", "two", 1), ChangeEnvelope::delete(DataType::MasterData, "grade:G3", 1, "test")]).await.unwrap();
    assert_eq!(sqlite.count(DataType::MasterData).unwrap(), 2, "live records, tombstones not counted");
    assert_eq!(sqlite.count(DataType::Employee).unwrap(), 0);

    let memory = MemorySink::default();
    memory.apply(&[md("G1", "one", 4)]).await.unwrap();
    let held = memory.get(DataType::MasterData, "grade:G1").expect("held");
    assert_eq!((held.version, held.deleted), (4, false));
    assert!(held.body.unwrap().contains("\"one\""));
    memory.tamper(DataType::MasterData, "grade:G1", Some(StoredRecord { version: 9, deleted: false, body: Some("{}".into()) }));
    assert_eq!(memory.get(DataType::MasterData, "grade:G1").unwrap().version, 9);
    memory.tamper(DataType::MasterData, "grade:G1", None);
    assert!(memory.get(DataType::MasterData, "grade:G1").is_none());
}

#[tokio::test]
async fn last_applied_is_stamped_by_applied_changes_only_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("erp.sqlite3");
    let sqlite = SqliteSink::open(&path).unwrap();
    assert_eq!(sqlite.last_applied(DataType::MasterData).unwrap(), None, "nothing applied yet");
    let before = chrono::Utc::now() - chrono::Duration::milliseconds(1);
    sqlite.apply(&[md("G1", "one", 2)]).await.unwrap();
    let first = sqlite.last_applied(DataType::MasterData).unwrap().expect("stamped");
    assert!(first >= before && first <= chrono::Utc::now(), "{first} is the time of the apply");
    assert_eq!(sqlite.last_applied(DataType::Employee).unwrap(), None, "only the types applied");

    std::thread::sleep(std::time::Duration::from_millis(5));
    let stale = sqlite.apply(&[md("G1", "older", 1)]).await.unwrap();
    assert_eq!(stale.stale, 1);
    assert_eq!(sqlite.last_applied(DataType::MasterData).unwrap(), Some(first), "a stale change applies nothing");
    assert!(sqlite.apply(&[md("G2", "two", 1), invalid("G3")]).await.is_err());
    assert_eq!(sqlite.last_applied(DataType::MasterData).unwrap(), Some(first), "a refused batch applies nothing");

    sqlite.apply(&[md("G1", "newer", 3)]).await.unwrap();
    let second = sqlite.last_applied(DataType::MasterData).unwrap().expect("stamped");
    assert!(second > first, "{second} after {first}");
    drop(sqlite);
    assert_eq!(SqliteSink::open(&path).unwrap().last_applied(DataType::MasterData).unwrap(), Some(second), "kept in the file");
}

#[tokio::test]
async fn debug_output_shows_versions_not_bodies() {
    let record = StoredRecord { version: 3, deleted: false, body: Some(r#"{"base_salary":98765432}"#.into()) };
    let text = format!("{record:?}");
    assert!(text.contains("version: 3") && !text.contains("98765432"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let sink = SqliteSink::open(dir.path().join("payroll.sqlite3")).unwrap();
    let text = format!("{sink:?}");
    assert!(text.contains("payroll.sqlite3"), "{text}");
}

/// The digest is of the bodies as stored, whatever wrote them: a hand edit,
/// a row inserted by hand, a store an older version wrote (this guards any
/// shortcut that would hash what the sink meant to write instead).
#[tokio::test]
async fn the_digest_sees_every_hand_edit_of_a_body() {
    use hr_core::{ContentHash, Digest};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite3");
    let sink = SqliteSink::open(&path).unwrap();
    sink.apply(&[md("G1", "Staff", 1), md("G2", "Lead", 1), md("G3", "Head", 1)]).await.unwrap();
    // What the store holds, hashed from the bodies as stored now.
    let from_bodies = |sink: &SqliteSink| {
        let conn = rusqlite::Connection::open(sink.path()).unwrap();
        let mut query = conn.prepare("SELECT id, version, deleted, body FROM master_data").unwrap();
        let rows = query.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<String>>(3)?))).unwrap();
        let mut digest = Digest::default();
        for (id, version, deleted, body) in rows.map(Result::unwrap) {
            digest.add(&id, version as u64, (deleted == 0).then(|| ContentHash::of(body.as_deref().unwrap_or(""))));
        }
        digest
    };
    let clean = sink.digest(DataType::MasterData).await.unwrap();
    assert_eq!(clean, from_bodies(&sink));

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE master_data SET body = replace(body, 'Staff', 'Tampered') WHERE id = 'grade:G1'", []).unwrap();
    let edited = sink.digest(DataType::MasterData).await.unwrap();
    assert_ne!(edited, clean, "a hand edit of a body did not show");
    assert_eq!(edited, from_bodies(&sink));
    conn.execute("INSERT INTO master_data (id, version, deleted, body) VALUES ('grade:G9', 1, 0, '{}')", []).unwrap();
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), from_bodies(&sink), "a row inserted by hand");
    // The edited row written again by a change.
    sink.apply(&[md("G1", "Staff", 2)]).await.unwrap();
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap(), from_bodies(&sink));

    // A store written by hand, in the table layout of the first releases.
    let old = dir.path().join("old.sqlite3");
    let conn = rusqlite::Connection::open(&old).unwrap();
    conn.execute_batch(
        "CREATE TABLE master_data (id TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, body TEXT);
         INSERT INTO master_data VALUES ('grade:G1', 1, 0, '{\"set\":\"grade\",\"code\":\"G1\",\"name\":\"Staff\",\"attributes\":{}}'), ('grade:G2', 3, 1, NULL);",
    )
    .unwrap();
    drop(conn);
    let reopened = SqliteSink::open(&old).unwrap();
    assert_eq!(reopened.digest(DataType::MasterData).await.unwrap(), from_bodies(&reopened));
    assert_eq!(reopened.digest(DataType::MasterData).await.unwrap().count, 1);
}

/// A letter a sink keeps is held whole, where the sink can be asked for
/// it; a sink that cannot keep letters says so, so the transport keeps
/// trying to dead-letter the record instead of believing it kept.
#[tokio::test]
async fn a_kept_letter_is_held_whole_and_a_sink_that_cannot_keep_one_says_so() {
    let letter = hr_core::KeptLetter {
        source: "hr.v1.master_data/0/7".into(),
        key: Some("grade:G1".into()),
        reason: "the dead-letter topic refused it".into(),
        payload: md("G1", "one", 1).to_json().into_bytes(),
        kept_at: chrono::Utc::now(),
    };
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::default();
    memory.keep_letter(&letter).await.unwrap();
    let sqlite = SqliteSink::open(dir.path().join("letters.sqlite3")).unwrap();
    sqlite.keep_letter(&letter).await.unwrap();
    for (name, kept) in [("memory", memory.kept_letters()), ("sqlite", sqlite.kept_letters().unwrap())] {
        assert_eq!(kept.len(), 1, "{name}");
        assert_eq!(
            (kept[0].source.as_str(), kept[0].key.as_deref(), &kept[0].payload),
            (letter.source.as_str(), letter.key.as_deref(), &letter.payload),
            "{name}"
        );
    }

    /// A sink that implements only what every sink must.
    struct Plain(MemorySink);
    #[async_trait::async_trait]
    impl Sink for Plain {
        async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<hr_core::ApplyOutcome, SinkError> {
            self.0.apply(batch).await
        }
        async fn entries(&self, data_type: DataType) -> Result<Vec<hr_core::DigestEntry>, SinkError> {
            self.0.entries(data_type).await
        }
    }
    let refused = Plain(MemorySink::default()).keep_letter(&letter).await.unwrap_err();
    assert!(matches!(refused, SinkError::Unsupported(_)), "{refused}");
}
