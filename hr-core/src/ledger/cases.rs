//! Review cases: employees the merge found may be one person (the same
//! name and birth date, no shared person key), kept in the ledger until a
//! person decides, because guessing either way is wrong: merging two people
//! gives one of them the other's access, keeping one person twice gives
//! them two accounts.
//!
//! A case opens the first time the merge reports the pair
//! ([`Ledger::open_cases`]) and stays open until it is decided
//! ([`Ledger::decide_case`]): `same` joins them from the next merge on (see
//! [`Identities::joined_into`](crate::Identities::joined_into)); `different`
//! closes it for good, however often the merge finds the pair again.

use super::{Ledger, LedgerError};
use crate::merge::{Conflict, ConflictKind, MergedState};
use rusqlite::{params, OptionalExtension};

/// A person's decision on a [`ReviewCase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseDecision {
    /// One person: the records join under the case's first employee id.
    Same,
    /// Different people: the case closes for good.
    Different,
}

impl CaseDecision {
    /// `same` or `different`.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseDecision::Same => "same",
            CaseDecision::Different => "different",
        }
    }
}

impl std::str::FromStr for CaseDecision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "same" => Ok(CaseDecision::Same),
            "different" => Ok(CaseDecision::Different),
            other => Err(format!("a decision is `same` or `different`, not {other:?}")),
        }
    }
}

/// Employees that may be one person, for a person to decide.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReviewCase {
    /// Stable for the same employees: `case-` and 12 hex digits.
    pub id: String,
    /// Their unified ids, sorted; `same` keeps the first.
    pub employees: Vec<String>,
    /// Why they may be one person.
    pub why: String,
    /// Each employee's record when the case opened, without the sensitive
    /// fields (phone, birth date, pay, person key).
    pub records: Vec<serde_json::Value>,
    /// When it opened (RFC 3339, UTC).
    pub opened_at: String,
    /// The decision, once made.
    pub decision: Option<CaseDecision>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When (RFC 3339, UTC).
    pub decided_at: Option<String>,
}

/// The case id of a set of employees: the same whichever run finds them.
fn case_id(employees: &[String]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(employees.join("\n").as_bytes());
    format!("case-{}", const_hex::encode(&hash[..6]))
}

/// What a case shows of an employee: who and where, nothing sensitive.
fn shown(state: &MergedState, id: &str) -> serde_json::Value {
    let Some(e) = state.employees.get(id) else { return serde_json::json!({ "id": id }) };
    serde_json::json!({
        "id": e.id, "source_ids": e.source_ids, "name": e.name, "name_en": e.name_en, "email": e.email,
        "org_unit": e.org_unit, "grade": e.grade, "status": e.status, "hire_date": e.hire_date.to_string(),
    })
}

impl Ledger {
    /// Opens a case for every possible duplicate in `conflicts` that has
    /// none yet (with the records as `state` has them); a case already
    /// open or decided is left as it is. Returns how many opened.
    pub fn open_cases(&mut self, conflicts: &[Conflict], state: &MergedState) -> Result<usize, LedgerError> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let storage = self.storage_owned();
        let tx = self.conn.transaction().map_err(&storage)?;
        let mut opened = 0;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO review_case (id, employees, why, records, opened_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING")
                .map_err(&storage)?;
            for conflict in conflicts.iter().filter(|c| c.kind == ConflictKind::PossibleDuplicatePerson) {
                let mut employees = conflict.ids.clone();
                employees.sort();
                let records: Vec<serde_json::Value> = employees.iter().map(|id| shown(state, id)).collect();
                let row = params![
                    case_id(&employees),
                    serde_json::to_string(&employees).unwrap_or_default(),
                    conflict.detail,
                    serde_json::Value::from(records).to_string(),
                    at
                ];
                opened += insert.execute(row).map_err(&storage)?;
            }
        }
        tx.commit().map_err(&storage)?;
        Ok(opened)
    }

    /// Every case, open ones first, each group oldest first.
    pub fn cases(&self) -> Result<Vec<ReviewCase>, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, employees, why, records, opened_at, decision, decided_by, decided_at FROM review_case \
                 ORDER BY decision IS NOT NULL, opened_at, id",
            )
            .map_err(self.storage())?;
        let rows = stmt.query_map([], case_of_row).map_err(self.storage())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.storage())
    }

    /// The case `id`, if there is one.
    pub fn case(&self, id: &str) -> Result<Option<ReviewCase>, LedgerError> {
        self.conn
            .prepare_cached("SELECT id, employees, why, records, opened_at, decision, decided_by, decided_at FROM review_case WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], case_of_row).optional())
            .map_err(self.storage())
    }

    /// Decides case `id` for `actor`, once: `same` makes every later merge
    /// join its employees under the first one's id (the others' records
    /// are then deleted where they were sent, their grants and pay are the
    /// survivor's); `different` closes it for good. The decision is in the
    /// audit log.
    pub fn decide_case(&mut self, id: &str, decision: CaseDecision, actor: &str) -> Result<ReviewCase, LedgerError> {
        let case = self.case(id)?.ok_or_else(|| LedgerError::NoSuchCase { id: id.to_string() })?;
        if let Some(made) = case.decision {
            return Err(LedgerError::CaseDecided { id: id.to_string(), decision: made.as_str(), by: case.decided_by.unwrap_or_default() });
        }
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let storage = self.storage_owned();
        let tx = self.conn.transaction().map_err(&storage)?;
        tx.execute("UPDATE review_case SET decision = ?2, decided_by = ?3, decided_at = ?4 WHERE id = ?1", params![id, decision.as_str(), actor, at])
            .map_err(&storage)?;
        if let (CaseDecision::Same, Some((survivor, others))) = (decision, case.employees.split_first()) {
            for other in others {
                tx.execute(
                    "INSERT INTO identity (source_id, unified_id) VALUES (?1, ?2) ON CONFLICT (source_id) DO UPDATE SET unified_id = excluded.unified_id",
                    params![crate::merge::joined_identity(other), survivor],
                )
                .map_err(&storage)?;
            }
        }
        tx.commit().map_err(&storage)?;
        let detail = serde_json::json!({"case": id, "decision": decision.as_str(), "employees": case.employees});
        self.audit(actor, "decide", &detail)?;
        Ok(self.case(id)?.unwrap_or(case))
    }
}

fn case_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReviewCase> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> { Ok(serde_json::from_str(&r.get::<_, String>(i)?).unwrap_or_default()) };
    let decision: Option<String> = r.get(5)?;
    Ok(ReviewCase {
        id: r.get(0)?,
        employees: serde_json::from_value(json(1)?).unwrap_or_default(),
        why: r.get(2)?,
        records: serde_json::from_value(json(3)?).unwrap_or_default(),
        opened_at: r.get(4)?,
        decision: decision.and_then(|d| d.parse().ok()),
        decided_by: r.get(6)?,
        decided_at: r.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str) -> Conflict {
        Conflict { kind: ConflictKind::PossibleDuplicatePerson, ids: vec![b.into(), a.into()], detail: "same name and birth date".into() }
    }

    #[test]
    fn a_case_opens_once_and_a_decision_is_made_once_and_audited() {
        let mut ledger = Ledger::in_memory().unwrap();
        let state = MergedState::default();
        assert_eq!(ledger.open_cases(&[pair("A-1", "B-7")], &state).unwrap(), 1);
        assert_eq!(ledger.open_cases(&[pair("A-1", "B-7")], &state).unwrap(), 0, "the same pair is the same case");
        let case = &ledger.cases().unwrap()[0];
        assert_eq!(case.employees, ["A-1", "B-7"]);
        assert_eq!(case.id, case_id(&["A-1".into(), "B-7".into()]));
        assert!(case.decision.is_none());
        let decided = ledger.decide_case(&case.id, CaseDecision::Same, "hr-lead").unwrap();
        assert_eq!((decided.decision, decided.decided_by.as_deref()), (Some(CaseDecision::Same), Some("hr-lead")));
        assert!(matches!(ledger.decide_case(&case.id, CaseDecision::Different, "other"), Err(LedgerError::CaseDecided { .. })));
        assert!(matches!(ledger.decide_case("case-000000000000", CaseDecision::Same, "x"), Err(LedgerError::NoSuchCase { .. })));
        assert_eq!(ledger.identities().unwrap().joined_into("B-7"), Some("A-1"));
        assert_eq!(ledger.open_cases(&[pair("A-1", "B-7")], &state).unwrap(), 0, "a decided case never reopens");
        let audit = ledger.audit_entries(None).unwrap();
        assert_eq!((audit[0].actor.as_str(), audit[0].action.as_str(), &audit[0].detail["decision"]), ("hr-lead", "decide", &serde_json::json!("same")));
    }

    #[test]
    fn a_case_shows_who_and_where_and_nothing_sensitive() {
        let mut ledger = Ledger::in_memory().unwrap();
        let mut state = MergedState::default();
        let employee: crate::Employee = serde_json::from_value(serde_json::json!({
            "id": "A-1", "source_ids": ["A-1"], "company": "A", "name": "김민준", "name_en": null, "email": "m1@a.example",
            "phone": "010-1234-5678", "birth_date": "1990-01-01", "org_unit": "A-D1", "grade": "manager", "status": "active",
            "hire_date": "2020-01-02", "termination_date": null, "manager": null, "updated_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        state.employees.insert("A-1".into(), employee);
        ledger.open_cases(&[pair("A-1", "B-7")], &state).unwrap();
        let shown = serde_json::to_string(&ledger.cases().unwrap()).unwrap();
        assert!(shown.contains("A-D1") && shown.contains("m1@a.example"), "{shown}");
        assert!(!shown.contains("1990") && !shown.contains("010-1234"), "a case shows a sensitive field: {shown}");
    }
}
