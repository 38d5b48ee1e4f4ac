//! Real-time changes and "newer wins": a change made in real time stands
//! until the source says something newer about its key.

use crate::merge::MergedState;
use crate::schema::{DataType, Record, RecordVisitor};
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

/// A change made in real time, as the ledger keeps it until a periodic
/// run's source catches up with it.
#[derive(Clone)]
pub struct RealtimeChange {
    /// The data type.
    pub data_type: DataType,
    /// The record key.
    pub key: String,
    /// When the change happened (the record's own time where it has one).
    pub at: DateTime<Utc>,
    /// The record as sent; `None` for a delete.
    pub payload: Option<Box<RawValue>>,
}

// A payload holds personal data and a compensation key names a person: neither is shown.
impl std::fmt::Debug for RealtimeChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.data_type.shown_key(&self.key);
        f.debug_struct("RealtimeChange")
            .field("data_type", &self.data_type)
            .field("key", &key)
            .field("at", &self.at)
            .field("delete", &self.payload.is_none())
            .finish_non_exhaustive()
    }
}

/// What a periodic run's source said about the keys changed in real time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewerWins {
    /// Keys whose source record (or absence) is not newer than their
    /// real-time change: the real-time state stands.
    pub source_older: Vec<String>,
    /// Keys whose source is newer, or now says the same: the source rules
    /// them again, and the ledger may forget their real-time change.
    pub settled: Vec<String>,
}

/// Applies "newer wins" to `state`'s records of `data_type`: each real-time
/// change stands unless the source's record of its key changed after it (a
/// record's [`Record::changed_at`], or else `exported_at`), and a key the
/// source lacks is deleted only if the export was made after the change.
/// Where the change stands, `state` gets its record (or loses the key).
pub fn apply_newer_wins(
    state: &mut MergedState,
    data_type: DataType,
    changes: &[RealtimeChange],
    exported_at: DateTime<Utc>,
) -> Result<NewerWins, serde_json::Error> {
    struct Apply<'a> {
        state: &'a mut MergedState,
        changes: &'a [RealtimeChange],
        exported_at: DateTime<Utc>,
    }
    impl RecordVisitor for Apply<'_> {
        type Output = Result<NewerWins, serde_json::Error>;
        fn visit<R: Record>(self) -> Self::Output {
            let records = R::map_mut(self.state);
            let mut outcome = NewerWins::default();
            for change in self.changes {
                let source = records.get(change.key.as_str());
                let source_changed = source.and_then(R::changed_at).unwrap_or(self.exported_at);
                let realtime: Option<R> = change.payload.as_deref().map(|p| serde_json::from_str(p.get())).transpose()?;
                if source_changed > change.at || source == realtime.as_ref() {
                    outcome.settled.push(change.key.clone());
                    continue;
                }
                outcome.source_older.push(change.key.clone());
                match realtime {
                    Some(record) => records.insert(change.key.as_str().into(), record),
                    None => records.remove(change.key.as_str()),
                };
            }
            Ok(outcome)
        }
    }
    data_type.visit(Apply { state, changes, exported_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PermissionGrant;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn grant(granted: bool, when: &str) -> PermissionGrant {
        PermissionGrant { employee: "A-1".into(), system: "erp".into(), role: "approver".into(), granted, expires: None, at: at(when) }
    }

    fn change(record: Option<&PermissionGrant>, when: &str) -> RealtimeChange {
        RealtimeChange {
            data_type: DataType::Permission,
            key: "A-1:erp:approver".into(),
            at: at(when),
            payload: record.map(|r| serde_json::value::to_raw_value(r).unwrap()),
        }
    }

    fn state_with(records: &[PermissionGrant]) -> MergedState {
        MergedState { permissions: records.iter().map(|g| (g.key().into(), g.clone())).collect(), ..MergedState::default() }
    }

    const EXPORTED: &str = "2026-11-26T00:00:00Z";

    #[test]
    fn a_revocation_stands_against_an_older_grant_in_the_source() {
        let revoked = grant(false, "2026-11-26T10:00:00Z");
        let mut state = state_with(&[grant(true, "2026-11-20T00:00:00Z")]);
        let outcome = apply_newer_wins(&mut state, DataType::Permission, &[change(Some(&revoked), "2026-11-26T10:00:00Z")], at(EXPORTED)).unwrap();
        assert_eq!(outcome.source_older, ["A-1:erp:approver"]);
        assert!(outcome.settled.is_empty());
        assert_eq!(state.permissions["A-1:erp:approver"], revoked);
    }

    #[test]
    fn a_newer_source_record_wins_and_settles_the_key() {
        let source = grant(true, "2026-11-27T08:00:00Z");
        let mut state = state_with(std::slice::from_ref(&source));
        let revoked = grant(false, "2026-11-26T10:00:00Z");
        let outcome = apply_newer_wins(&mut state, DataType::Permission, &[change(Some(&revoked), "2026-11-26T10:00:00Z")], at(EXPORTED)).unwrap();
        assert_eq!(outcome.settled, ["A-1:erp:approver"]);
        assert!(outcome.source_older.is_empty());
        assert_eq!(state.permissions["A-1:erp:approver"], source);
    }

    #[test]
    fn a_source_that_caught_up_settles_the_key_without_reporting_it_older() {
        let same = grant(false, "2026-11-26T10:00:00Z");
        let mut state = state_with(std::slice::from_ref(&same));
        let outcome = apply_newer_wins(&mut state, DataType::Permission, &[change(Some(&same), "2026-11-26T10:00:00Z")], at(EXPORTED)).unwrap();
        assert_eq!(outcome, NewerWins { source_older: vec![], settled: vec!["A-1:erp:approver".into()] });
    }

    #[test]
    fn a_key_created_after_the_export_survives_its_absence_from_it() {
        let created = grant(true, "2026-11-26T10:00:00Z");
        let mut state = state_with(&[]);
        let outcome = apply_newer_wins(&mut state, DataType::Permission, &[change(Some(&created), "2026-11-26T10:00:00Z")], at(EXPORTED)).unwrap();
        assert_eq!(outcome.source_older, ["A-1:erp:approver"]);
        assert_eq!(state.permissions["A-1:erp:approver"], created);
    }

    #[test]
    fn a_later_export_without_the_key_deletes_it() {
        let created = grant(true, "2026-11-25T10:00:00Z");
        let mut state = state_with(&[]);
        let outcome = apply_newer_wins(&mut state, DataType::Permission, &[change(Some(&created), "2026-11-25T10:00:00Z")], at(EXPORTED)).unwrap();
        assert_eq!(outcome.settled, ["A-1:erp:approver"]);
        assert!(state.permissions.is_empty());
    }

    #[test]
    fn a_real_time_delete_stands_against_an_older_source_record() {
        let mut state = state_with(&[grant(true, "2026-11-20T00:00:00Z")]);
        let outcome = apply_newer_wins(&mut state, DataType::Permission, &[change(None, "2026-11-26T10:00:00Z")], at(EXPORTED)).unwrap();
        assert_eq!(outcome.source_older, ["A-1:erp:approver"]);
        assert!(state.permissions.is_empty());
    }

    #[test]
    fn a_record_without_a_time_of_its_own_is_as_new_as_its_export() {
        let md = |name: &str| crate::MasterData { set: "md.site".into(), code: "S1".into(), name: name.into(), attributes: Default::default() };
        let realtime = RealtimeChange {
            data_type: DataType::MasterData,
            key: md("x").key(),
            at: at("2026-11-26T10:00:00Z"),
            payload: Some(serde_json::value::to_raw_value(&md("real time")).unwrap()),
        };
        for (exported, stands) in [("2026-11-26T09:59:59Z", true), ("2026-11-26T10:00:01Z", false)] {
            let mut state = MergedState { master_data: [(md("x").key().into(), md("export"))].into(), ..MergedState::default() };
            let outcome = apply_newer_wins(&mut state, DataType::MasterData, std::slice::from_ref(&realtime), at(exported)).unwrap();
            assert_eq!(outcome.source_older.len() == 1, stands);
            assert_eq!(state.master_data[md("x").key().as_str()].name, if stands { "real time" } else { "export" });
        }
    }

    #[test]
    fn debug_shows_neither_payload_nor_a_sensitive_key() {
        let change = RealtimeChange {
            data_type: DataType::Compensation,
            key: "A-1001".into(),
            at: at(EXPORTED),
            payload: Some(RawValue::from_string(r#"{"base_salary":123456789}"#.into()).unwrap()),
        };
        let shown = format!("{change:?}");
        assert!(!shown.contains("A-1001") && !shown.contains("123456789"), "{shown}");
    }
}
