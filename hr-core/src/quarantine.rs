//! Records that could not be merged, and why.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One reason code from the input contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The row is not parseable (bad CSV/JSON, wrong type, bad value, too long).
    MalformedRow,
    /// A required field is empty or absent.
    MissingField,
    /// The email address is not of the form `local@domain.tld`.
    InvalidEmail,
    /// A date or timestamp does not parse.
    InvalidDate,
    /// The rank or grade is not in `mapping.toml`.
    UnknownGrade,
    /// The employee's org unit does not exist (or was quarantined).
    UnknownOrgUnit,
    /// The org unit's parent does not exist (or was quarantined).
    DanglingParent,
    /// The org unit is part of a parent cycle.
    OrgCycle,
    /// Another record has the same source id and a later `updated_at`.
    DuplicateSourceId,
    /// A timestamp more than a day after now: it would win "newer wins"
    /// against every real change to come.
    ImplausibleTime,
    /// A byte sequence that is not text of the file's encoding.
    InvalidEncoding,
    /// Not an error: the row takes effect on a later day, and its person
    /// has no row in effect yet, so what the systems hold stays until then.
    NotYetEffective,
}

impl Reason {
    /// The reason code as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MalformedRow => "malformed_row",
            Reason::MissingField => "missing_field",
            Reason::InvalidEmail => "invalid_email",
            Reason::InvalidDate => "invalid_date",
            Reason::UnknownGrade => "unknown_grade",
            Reason::UnknownOrgUnit => "unknown_org_unit",
            Reason::DanglingParent => "dangling_parent",
            Reason::OrgCycle => "org_cycle",
            Reason::DuplicateSourceId => "duplicate_source_id",
            Reason::ImplausibleTime => "implausible_time",
            Reason::InvalidEncoding => "invalid_encoding",
            Reason::NotYetEffective => "not_yet_effective",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record set aside: never dropped silently, always reported.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Quarantined {
    /// Source file, relative to the input directory (e.g. `company_a/employees.csv`).
    pub file: String,
    /// Line where the record starts (CSV: the header is line 1; JSONL: first line is 1).
    pub line: u64,
    /// The record's unified id, when it could be read.
    pub id: Option<String>,
    /// The reason code.
    pub reason: Reason,
    /// What exactly is wrong, naming the field. Never contains a sensitive value.
    pub detail: String,
}

/// Where a source record came from, for quarantine entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Origin {
    /// File, relative to the input directory.
    pub file: &'static str,
    /// Line where the record starts.
    pub line: u64,
}

impl Origin {
    /// Builds the quarantine entry for this record.
    pub(crate) fn quarantine(&self, id: Option<String>, reason: Reason, detail: impl Into<String>) -> Quarantined {
        Quarantined { file: self.file.to_string(), line: self.line, id, reason, detail: detail.into() }
    }
}
