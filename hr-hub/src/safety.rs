//! How much one run may change before a person approves it: the
//! configuration's `[safety]`, and the check of a plan against it.
//!
//! A wrong export delivered correctly is the worst incident in HR-driven
//! provisioning: a truncated file, or a filter that terminates a third of
//! the company, and every system obeys within minutes. So a run that would
//! delete, terminate, revoke or change pay beyond these limits in any
//! target sends nothing and is *held* until that exact plan is approved.
//!
//! ```toml
//! [safety]
//! max_deletes = "5%"          # of the records of a type a target holds
//! max_terminations = "5%"
//! max_revocations = "5%"
//! max_compensation_changes = 200
//! min_records = 10            # a run changing at most this many is never held
//!
//! [safety.targets.payroll]    # per-target overrides
//! max_compensation_changes = "20%"
//! ```

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most of one kind of change a run may make in a target: a count, or
/// a share of the records of the data type the target holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this many.
    Count(u64),
    /// At most this share (0 to 1) of what the target holds.
    Share(f64),
}

impl Limit {
    /// The most allowed where the target holds `records`.
    pub fn of(self, records: u64) -> f64 {
        match self {
            Limit::Count(n) => n as f64,
            Limit::Share(share) => share * records as f64,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Share(share) => write!(f, "{}%", share * 100.0),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(u64),
            Text(String),
        }
        let share = |text: &str| -> Option<f64> { text.trim().strip_suffix('%')?.trim().parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)) };
        match Written::deserialize(deserializer)? {
            Written::Count(n) => Ok(Limit::Count(n)),
            Written::Text(text) => share(&text)
                .map(|p| Limit::Share(p / 100.0))
                .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is neither a count (25) nor a share (\"5%\", 0 to 100)"))),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Limits for one target (or every target); unset ones fall back to the
/// `[safety]` section's, then to the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Deletes of one data type.
    pub max_deletes: Option<Limit>,
    /// Employees whose status becomes `terminated`.
    pub max_terminations: Option<Limit>,
    /// Grants in force that become revoked.
    pub max_revocations: Option<Limit>,
    /// Compensation records created, changed or deleted.
    pub max_compensation_changes: Option<Limit>,
    /// A run making at most this many changes of a kind is never held for them.
    pub min_records: Option<u64>,
}

/// The configuration's `[safety]`: [`Limits`] for every target, and per-target overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// Deletes of one data type, in any target.
    pub max_deletes: Option<Limit>,
    /// Terminations, in any target.
    pub max_terminations: Option<Limit>,
    /// Revocations of grants in force, in any target.
    pub max_revocations: Option<Limit>,
    /// Compensation records created, changed or deleted, in any target.
    pub max_compensation_changes: Option<Limit>,
    /// A run making at most this many changes of a kind is never held for them.
    pub min_records: Option<u64>,
    /// Per-target overrides.
    #[serde(default)]
    pub targets: BTreeMap<String, Limits>,
}

/// The default share for deletes, terminations and revocations: 5%.
pub const DEFAULT_SHARE: f64 = 0.05;
/// The default number of changes of a kind that never holds a run: 10.
pub const DEFAULT_MIN_RECORDS: u64 = 10;

/// A kind of change the limits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarded {
    /// Deletes.
    Deletes,
    /// Terminations.
    Terminations,
    /// Revocations of grants in force.
    Revocations,
    /// Compensation created, changed or deleted.
    CompensationChanges,
}

impl Guarded {
    fn name(self) -> &'static str {
        match self {
            Guarded::Deletes => "deletes",
            Guarded::Terminations => "terminations",
            Guarded::Revocations => "revocations",
            Guarded::CompensationChanges => "compensation changes",
        }
    }
}

impl SafetyConfig {
    /// The limit of `kind` in `target`: its override, the section's, or the
    /// default (5% for deletes, terminations and revocations; none for pay).
    pub fn limit(&self, target: &str, kind: Guarded) -> Option<Limit> {
        let pick = |l: &Limits| match kind {
            Guarded::Deletes => l.max_deletes,
            Guarded::Terminations => l.max_terminations,
            Guarded::Revocations => l.max_revocations,
            Guarded::CompensationChanges => l.max_compensation_changes,
        };
        let default = (kind != Guarded::CompensationChanges).then_some(Limit::Share(DEFAULT_SHARE));
        self.targets.get(target).and_then(pick).or_else(|| pick(&self.section())).or(default)
    }

    /// The number of changes of a kind that never holds a run in `target`.
    pub fn min_records(&self, target: &str) -> u64 {
        self.targets.get(target).and_then(|l| l.min_records).or(self.min_records).unwrap_or(DEFAULT_MIN_RECORDS)
    }

    /// The section's own limits, as a target's are written.
    fn section(&self) -> Limits {
        Limits {
            max_deletes: self.max_deletes,
            max_terminations: self.max_terminations,
            max_revocations: self.max_revocations,
            max_compensation_changes: self.max_compensation_changes,
            min_records: self.min_records,
        }
    }

    /// Why `count` changes of `kind` in `target`, which holds `records`,
    /// hold the run; `None` if they may go.
    pub fn check(&self, target: &str, data_type: hr_core::DataType, kind: Guarded, count: u64, records: u64) -> Option<HoldReason> {
        let limit = self.limit(target, kind)?;
        (count > self.min_records(target) && count as f64 > limit.of(records)).then(|| HoldReason {
            target: target.to_string(),
            data_type,
            kind,
            count,
            records,
            limit,
        })
    }
}

/// One reason a run is held: a kind of change over its limit in a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldReason {
    /// The target.
    pub target: String,
    /// The data type.
    pub data_type: hr_core::DataType,
    /// What kind of change.
    pub kind: Guarded,
    /// How many the run would make.
    pub count: u64,
    /// How many records of the type the target holds now.
    pub records: u64,
    /// The limit they are over.
    pub limit: Limit,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: {} {} of {} records, over the limit of {}", self.target, self.data_type, self.count, self.kind.name(), self.records, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hr_core::DataType;

    fn parse(text: &str) -> Result<SafetyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_hold_over_five_percent_and_over_ten_records() {
        let safety = SafetyConfig::default();
        let check = |kind, count, records| safety.check("erp", DataType::Employee, kind, count, records);
        assert_eq!(check(Guarded::Terminations, 10, 100), None, "ten never holds");
        assert!(check(Guarded::Terminations, 11, 100).is_some(), "11 of 100 is over 5%");
        assert_eq!(check(Guarded::Terminations, 50, 1000), None, "exactly 5% goes");
        assert!(check(Guarded::Deletes, 51, 1000).is_some());
        assert!(check(Guarded::Revocations, 51, 1000).is_some());
        assert_eq!(check(Guarded::CompensationChanges, 1000, 1000), None, "pay has no default limit");
        let reason = check(Guarded::Terminations, 300, 1000).unwrap().to_string();
        assert_eq!(reason, "erp/employee: 300 terminations of 1000 records, over the limit of 5%");
    }

    #[test]
    fn counts_shares_and_per_target_overrides_are_read() {
        let safety =
            parse("max_deletes = 25\nmax_compensation_changes = \"20%\"\nmin_records = 0\n[targets.payroll]\nmax_deletes = \"50%\"\nmin_records = 100\n")
                .unwrap();
        assert_eq!(safety.limit("erp", Guarded::Deletes), Some(Limit::Count(25)));
        assert_eq!(safety.limit("payroll", Guarded::Deletes), Some(Limit::Share(0.5)));
        assert_eq!(safety.limit("payroll", Guarded::CompensationChanges), Some(Limit::Share(0.2)));
        assert_eq!(safety.limit("erp", Guarded::Terminations), Some(Limit::Share(DEFAULT_SHARE)));
        assert!(safety.check("erp", DataType::Employee, Guarded::Deletes, 26, 10_000).is_some());
        assert!(safety.check("payroll", DataType::Employee, Guarded::Deletes, 99, 100).is_none(), "payroll's min_records");
        for bad in ["max_deletes = \"five\"", "max_deletes = \"150%\"", "max_delete = 3", "[targets.erp]\nmax_terminations = -1"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
