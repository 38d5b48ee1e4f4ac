//! The unified HR schema `hr.v1`.

use crate::Sensitive;
use chrono::{DateTime, NaiveDate, Utc};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The schema name every envelope carries.
pub const SCHEMA: &str = "hr.v1";

/// The longest id a record may hold, in bytes: a source id (at most 128
/// bytes in an export) with its company prefix fits.
pub const MAX_ID_BYTES: usize = 160;

/// The longest role a grant may carry, and the longest code of a code set, in bytes.
pub const MAX_CODE_BYTES: usize = 128;

/// Whether `c` may appear in an id: ASCII letters and digits, `-`, `_` and
/// `.`. Nothing else, so no two ids look alike (a Cyrillic `А-1` beside
/// a Latin `A-1`) and none holds the `:` keys are joined with.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Whether `text` is an id: 1 to [`MAX_ID_BYTES`] of [`is_id_char`].
///
/// ```
/// assert!(hr_core::is_valid_id("B-OU-42") && !hr_core::is_valid_id("А-1001") && !hr_core::is_valid_id("a:b"));
/// ```
pub fn is_valid_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_ID_BYTES && text.chars().all(is_id_char)
}

/// Whether `text` is a code (a role, a master-data code): 1 to
/// [`MAX_CODE_BYTES`] bytes without control characters.
pub fn is_valid_code(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_CODE_BYTES && !text.chars().any(char::is_control)
}

/// `Err(problem)` unless `ok`.
fn rule(ok: bool, problem: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(problem)
    }
}

/// The kinds of record the library propagates. Each has its own topic, table
/// and routing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    /// [`Employee`]
    Employee,
    /// [`OrgUnit`]
    OrgUnit,
    /// [`MasterData`]
    MasterData,
    /// [`PermissionGrant`]
    Permission,
    /// [`Compensation`] (sensitive)
    Compensation,
}

impl DataType {
    /// Every data type, in a fixed order.
    pub const ALL: [DataType; 5] = [DataType::Employee, DataType::OrgUnit, DataType::MasterData, DataType::Permission, DataType::Compensation];

    /// The wire and table name: `employee`, `org_unit`, `master_data`,
    /// `permission`, `compensation`.
    pub fn as_str(self) -> &'static str {
        self.visit(Name)
    }

    /// Whether records of this type hold personal data that only allowed
    /// targets may receive.
    pub fn is_sensitive(self) -> bool {
        self.visit(Sensitivity)
    }

    /// A key of this type as logs, errors, reports and `Debug` may show it:
    /// [`REDACTED`](crate::REDACTED) for sensitive types (a compensation key
    /// says whose pay it is). The one redaction rule for keys.
    ///
    /// ```
    /// use hr_core::DataType;
    /// assert_eq!(DataType::Employee.shown_key("A-1001"), "A-1001");
    /// assert_eq!(DataType::Compensation.shown_key("A-1001"), hr_core::REDACTED);
    /// ```
    pub fn shown_key(self, key: &str) -> &str {
        if self.is_sensitive() {
            crate::REDACTED
        } else {
            key
        }
    }

    /// Runs generic code for this data type's record type: the one place
    /// that maps a data type to its [`Record`].
    pub fn visit<V: RecordVisitor>(self, visitor: V) -> V::Output {
        match self {
            DataType::Employee => visitor.visit::<Employee>(),
            DataType::OrgUnit => visitor.visit::<OrgUnit>(),
            DataType::MasterData => visitor.visit::<MasterData>(),
            DataType::Permission => visitor.visit::<PermissionGrant>(),
            DataType::Compensation => visitor.visit::<Compensation>(),
        }
    }
}

/// A record type of the schema: what it is called, how it is keyed, and
/// whether it is sensitive. Merge, envelope validation, the receiver's
/// field checks and routing read these through [`DataType::visit`]
/// instead of matching on the data type each.
///
/// ```
/// use hr_core::{ChangeEnvelope, Compensation, DataType, MasterData, Record};
/// assert_eq!(MasterData::DATA_TYPE, DataType::MasterData);
/// assert!(Compensation::SENSITIVE && DataType::Compensation.is_sensitive());
/// let md = MasterData { set: "md.category".into(), code: "C1".into(), name: "Food".into(), attributes: Default::default() };
/// let change = ChangeEnvelope::of(&md, 1, "sales").unwrap();
/// assert_eq!((change.data_type, change.key.as_str()), (DataType::MasterData, "md.category:C1"));
/// ```
///
/// The schema's record types are the only ones: the trait is sealed.
pub trait Record: sealed::Sealed + Clone + PartialEq + Serialize + serde::de::DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static {
    /// Its data type.
    const DATA_TYPE: DataType;
    /// The wire and table name.
    const NAME: &'static str;
    /// Whether it holds personal data only allowed targets may receive.
    const SENSITIVE: bool = false;
    /// The record's key, unique within its data type.
    fn key(&self) -> String;
    /// A rule of the schema beyond its fields' types, broken: what is wrong.
    fn check(&self) -> Result<(), &'static str> {
        Ok(())
    }
    /// When the source last changed the record, if the record says: what
    /// "newer wins" compares with a real-time change of its key (a record
    /// that does not say counts as changed when its export was made).
    fn changed_at(&self) -> Option<DateTime<Utc>> {
        None
    }
}

pub(crate) mod sealed {
    use crate::MergedState;
    use compact_str::CompactString;
    use std::collections::BTreeMap;

    /// Keeps [`Record`](super::Record) to this crate's types, and gives
    /// generic code their map in a [`MergedState`].
    pub trait Sealed: Sized {
        fn map(state: &MergedState) -> &BTreeMap<CompactString, Self>;
        fn map_mut(state: &mut MergedState) -> &mut BTreeMap<CompactString, Self>;
    }
    macro_rules! sealed {
        ($($record:ident => $field:ident),*) => {$(
            impl Sealed for super::$record {
                fn map(state: &MergedState) -> &BTreeMap<CompactString, Self> {
                    &state.$field
                }
                fn map_mut(state: &mut MergedState) -> &mut BTreeMap<CompactString, Self> {
                    &mut state.$field
                }
            }
        )*};
    }
    sealed!(Employee => employees, OrgUnit => org_units, MasterData => master_data, PermissionGrant => permissions, Compensation => compensation);
}

/// Generic code over one [`Record`] type, chosen at run time with [`DataType::visit`].
pub trait RecordVisitor {
    /// What the code returns.
    type Output;
    /// Runs the code for record type `R`.
    fn visit<R: Record>(self) -> Self::Output;
}

struct Name;

impl RecordVisitor for Name {
    type Output = &'static str;
    fn visit<R: Record>(self) -> &'static str {
        R::NAME
    }
}

struct Sensitivity;

impl RecordVisitor for Sensitivity {
    type Output = bool;
    fn visit<R: Record>(self) -> bool {
        R::SENSITIVE
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a string names no data type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data type {0:?}; expected one of employee, org_unit, master_data, permission, compensation")]
pub struct UnknownDataType(pub String);

impl FromStr for DataType {
    type Err = UnknownDataType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownDataType(s.to_string()))
    }
}

/// The company a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Company {
    /// The legacy Korean HR system (CSV export).
    A,
    /// The newer system (JSON lines export).
    B,
}

impl Company {
    /// `"A"` or `"B"`: the id prefix and the company's org root.
    pub fn as_str(self) -> &'static str {
        match self {
            Company::A => "A",
            Company::B => "B",
        }
    }
}

/// Employment status in the unified schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmployeeStatus {
    /// Working.
    Active,
    /// On leave.
    OnLeave,
    /// No longer employed.
    Terminated,
    /// Hired, before the first day: only a target with `pre_start_days`
    /// receives the person this way, from that many days before the hire
    /// date; on the day they are `active` everywhere.
    PreHire,
}

/// One person in the merged group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Employee {
    /// Unified id: `A-<emp_no>` or `B-<employeeId>` (of the primary record).
    pub id: CompactString,
    /// Every source id this person had (`A-…`, `B-…`), sorted.
    pub source_ids: Vec<CompactString>,
    /// The employing company (that of the primary record).
    pub company: Company,
    /// Name as written in Korean.
    pub name: CompactString,
    /// Name in Latin script.
    pub name_en: Option<CompactString>,
    /// Work email.
    pub email: Option<CompactString>,
    /// Phone number.
    pub phone: Option<Sensitive<CompactString>>,
    /// Birth date.
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub birth_date: Option<Sensitive<NaiveDate>>,
    /// Unified org unit id.
    pub org_unit: CompactString,
    /// Unified grade (from `mapping.toml`).
    pub grade: CompactString,
    /// Employment status.
    pub status: EmployeeStatus,
    /// First day of employment.
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub hire_date: NaiveDate,
    /// Last day of employment, when known.
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub termination_date: Option<NaiveDate>,
    /// Unified id of the manager.
    pub manager: Option<CompactString>,
    /// When the source system last changed this person (UTC).
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// An employee's pay. Sensitive: only targets allowed to hold it receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Compensation {
    /// Unified employee id (also the record key).
    pub employee_id: CompactString,
    /// Base salary per year, in minor-less units of `currency`.
    pub base_salary: Sensitive<u64>,
    /// ISO 4217 code, e.g. `KRW`.
    pub currency: CompactString,
    /// From when this salary applies.
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub effective_date: NaiveDate,
}

/// A team or department.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OrgUnit {
    /// Unified id: `GROUP`, `A`, `B`, `A-<dept_code>` or `B-<orgUnitId>`.
    pub id: CompactString,
    /// Owning company; `None` for the group root.
    pub company: Option<Company>,
    /// Display name.
    pub name: CompactString,
    /// Parent unit id; `None` only for `GROUP`.
    pub parent: Option<CompactString>,
    /// Unified employee id of the leader.
    pub leader: Option<CompactString>,
    /// When the source system last changed it (UTC).
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// One code of a code set (`grade`, `md.category`, ...). Any system may
/// publish master data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MasterData {
    /// The code set, e.g. `md.category`.
    pub set: CompactString,
    /// The code within the set.
    pub code: CompactString,
    /// Display name.
    pub name: CompactString,
    /// Further attributes, sorted by name.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<CompactString, CompactString>,
}

impl MasterData {
    /// The record key: `<set>:<code>`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.set, self.code)
    }

    /// The set a master data key belongs to: the part before the first `:`.
    pub fn set_of_key(key: &str) -> &str {
        key.split_once(':').map_or(key, |(set, _)| set)
    }
}

/// A role an employee holds (or held) in a system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PermissionGrant {
    /// Unified employee id.
    pub employee: CompactString,
    /// The system the role is in, e.g. `erp`.
    pub system: CompactString,
    /// The role, e.g. `approver`.
    pub role: CompactString,
    /// `true` when granted, `false` once revoked.
    pub granted: bool,
    /// When the grant lapses, if ever.
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub expires: Option<NaiveDate>,
    /// When the grant or revocation happened (UTC).
    #[serde(serialize_with = "crate::iso_text::serialize")]
    pub at: DateTime<Utc>,
}

impl PermissionGrant {
    /// The record key: `<employee>:<system>:<role>`.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.employee, self.system, self.role)
    }

    /// Whether the grant is in force on `day`: granted, and `day` is not
    /// after its `expires` date (a grant is in force through that date).
    ///
    /// ```
    /// use chrono::NaiveDate;
    /// let day = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    /// let grant = hr_core::PermissionGrant {
    ///     employee: "A-1".into(), system: "erp".into(), role: "approver".into(),
    ///     granted: true, expires: Some(day(1)), at: "2026-01-01T00:00:00Z".parse().unwrap(),
    /// };
    /// assert!(grant.in_force_on(day(1)) && !grant.in_force_on(day(2)));
    /// ```
    pub fn in_force_on(&self, day: NaiveDate) -> bool {
        self.granted && self.expires.is_none_or(|expires| day <= expires)
    }

    /// This grant revoked at `at`, or when it was granted if that is later
    /// (a revocation never predates what it revokes).
    pub fn revoked(&self, at: DateTime<Utc>) -> PermissionGrant {
        PermissionGrant { granted: false, at: at.max(self.at), ..self.clone() }
    }

    /// Whether this grant event replaces `other` (same key): the later one
    /// wins; at the same instant a revocation beats a grant, and a grant
    /// without expiry (lasting longest) beats one with.
    pub fn supersedes(&self, other: &PermissionGrant) -> bool {
        let rank = |g: &PermissionGrant| (g.at, !g.granted, g.expires.unwrap_or(NaiveDate::MAX));
        rank(self) > rank(other)
    }

    /// The first instant the grant is no longer in force because it expired:
    /// the start (UTC) of the day after `expires`.
    pub fn lapses_at(&self) -> Option<DateTime<Utc>> {
        self.expires.and_then(|e| e.succ_opt()).map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
    }
}

impl Record for Employee {
    const DATA_TYPE: DataType = DataType::Employee;
    const NAME: &'static str = "employee";
    fn key(&self) -> String {
        self.id.to_string()
    }
    fn check(&self) -> Result<(), &'static str> {
        rule(is_valid_id(&self.id), ID_RULE)
    }
    fn changed_at(&self) -> Option<DateTime<Utc>> {
        Some(self.updated_at)
    }
}

impl Record for OrgUnit {
    const DATA_TYPE: DataType = DataType::OrgUnit;
    const NAME: &'static str = "org_unit";
    fn key(&self) -> String {
        self.id.to_string()
    }
    fn check(&self) -> Result<(), &'static str> {
        rule(is_valid_id(&self.id), ID_RULE)
    }
    fn changed_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
}

impl Record for MasterData {
    const DATA_TYPE: DataType = DataType::MasterData;
    const NAME: &'static str = "master_data";
    fn key(&self) -> String {
        MasterData::key(self)
    }
    /// The key is `<set>:<code>` and the set is read back from it up to the first `:`.
    fn check(&self) -> Result<(), &'static str> {
        rule(is_valid_id(&self.set), "a code set's name must be an id (1 to 160 bytes of ASCII letters, digits, '-', '_', '.')")?;
        rule(is_valid_code(&self.code), "a code must be 1 to 128 bytes without control characters")
    }
}

impl Record for PermissionGrant {
    const DATA_TYPE: DataType = DataType::Permission;
    const NAME: &'static str = "permission";
    fn key(&self) -> String {
        PermissionGrant::key(self)
    }
    fn changed_at(&self) -> Option<DateTime<Utc>> {
        Some(self.at)
    }
    /// The key's parts are separated by `:`, and routing reads the system
    /// from the key: neither the employee nor the system may hold one.
    fn check(&self) -> Result<(), &'static str> {
        rule(
            is_valid_id(&self.employee) && is_valid_id(&self.system),
            "a grant's `employee` and `system` must be ids (1 to 160 bytes of ASCII letters, digits, '-', '_', '.')",
        )?;
        rule(is_valid_code(&self.role), "a grant's `role` must be 1 to 128 bytes without control characters")
    }
}

impl Record for Compensation {
    const DATA_TYPE: DataType = DataType::Compensation;
    const NAME: &'static str = "compensation";
    const SENSITIVE: bool = true;
    fn key(&self) -> String {
        self.employee_id.to_string()
    }
    fn check(&self) -> Result<(), &'static str> {
        rule(is_valid_id(&self.employee_id), ID_RULE)
    }
}

/// What [`is_valid_id`] asks of a record's id, as a receiver says it.
const ID_RULE: &str = "the id must be 1 to 160 bytes of ASCII letters, digits, '-', '_' and '.'";

#[cfg(test)]
mod tests {
    use super::*;

    struct TypeOf;

    impl RecordVisitor for TypeOf {
        type Output = DataType;
        fn visit<R: Record>(self) -> DataType {
            R::DATA_TYPE
        }
    }

    #[test]
    fn every_data_type_visits_its_own_record_type_under_the_name_serde_gives_it() {
        for t in DataType::ALL {
            assert_eq!(t.visit(TypeOf), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
            assert_eq!(t.as_str().parse::<DataType>(), Ok(t));
        }
        let sensitive: Vec<DataType> = DataType::ALL.into_iter().filter(|t| t.is_sensitive()).collect();
        assert_eq!(sensitive, [DataType::Compensation]);
    }
}
