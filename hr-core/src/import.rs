//! Readers for the two companies' exports (the README's "Input contract").
//!
//! Every reader streams its file record by record with a bounded record size.
//! A bad record becomes a [`Quarantined`] entry and the rest proceed; only a
//! missing or unreadable file, a wrong CSV header, or invalid UTF-8 stops
//! the import, with an error naming the file.

use crate::mapping::Mapping;
use crate::quarantine::{Origin, Quarantined, Reason};
use crate::records::{RawRecord, RecordReader, DEFAULT_MAX_RECORD_BYTES};
use crate::schema::{Company, EmployeeStatus};
use crate::Sensitive;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Company A's employee file.
pub const A_EMPLOYEES: &str = "company_a/employees.csv";
/// Company A's department file.
pub const A_DEPARTMENTS: &str = "company_a/departments.csv";
/// Company B's employee file.
pub const B_EMPLOYEES: &str = "company_b/employees.jsonl";
/// Company B's org unit file.
pub const B_ORG_UNITS: &str = "company_b/org_units.jsonl";
/// Optional master data file.
pub const MASTER_DATA: &str = "master_data.csv";
/// Optional permission grants file.
pub const PERMISSIONS: &str = "permissions.jsonl";

/// Header of `company_a/employees.csv`.
pub const A_EMPLOYEE_COLUMNS: [&str; 14] = [
    "emp_no",
    "name",
    "name_en",
    "email",
    "dept_code",
    "rank",
    "hire_date",
    "status",
    "phone",
    "manager_emp_no",
    "birth_date",
    "person_key",
    "base_salary",
    "updated_at",
];
/// Header of `company_a/departments.csv`.
pub const A_DEPARTMENT_COLUMNS: [&str; 5] = ["dept_code", "dept_name", "parent_dept_code", "leader_emp_no", "updated_at"];
/// Required columns of `master_data.csv` (further columns become attributes).
pub const MASTER_DATA_COLUMNS: [&str; 3] = ["set", "code", "name"];

/// An input that cannot be imported at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A required file is absent.
    #[error("{file}: required input file is missing (expected at {path})")]
    Missing {
        /// File relative to the input directory.
        file: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not UTF-8.
    #[error("{file}, line {line}: not valid UTF-8 (the contract requires UTF-8; re-export the file as UTF-8)")]
    InvalidUtf8 {
        /// The file.
        file: String,
        /// The line.
        line: u64,
    },
    /// A CSV file has no header row.
    #[error("{file}: empty file, expected a header row: {expected}")]
    Empty {
        /// The file.
        file: String,
        /// The expected header.
        expected: String,
    },
    /// A CSV header lacks required columns.
    #[error("{file}, line 1: wrong header: missing column(s) {missing}; expected {expected}")]
    WrongHeader {
        /// The file.
        file: String,
        /// Missing columns, comma separated.
        missing: String,
        /// The expected header.
        expected: String,
    },
    /// The mapping file is unusable.
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    /// The input would not fit in memory once merged.
    #[error(
        "the input is {} MiB; merging it needs about {} MiB of memory but only {} MiB is available: \
         split the export (for example by company or by org subtree) or run on a machine with more memory",
        .input_bytes >> 20, .needed_bytes >> 20, .available_bytes >> 20
    )]
    TooLarge {
        /// Size of the input files.
        input_bytes: u64,
        /// Estimated memory the merge needs.
        needed_bytes: u64,
        /// Memory available now.
        available_bytes: u64,
    },
}

/// Peak resident memory a load and merge need per byte of input: 5.9 was
/// measured on the 1,000,000-employee run (374 MiB of files, 2.1 GiB peak);
/// rounded up with a margin.
pub const MEMORY_PER_INPUT_BYTE: u64 = 7;

/// Refuses an input whose merge would need more memory than is available,
/// with an error that says so, instead of being killed by the kernel midway.
///
/// ```
/// use hr_core::import::fits_in_memory;
/// assert!(fits_in_memory(100 << 20, 8 << 30).is_ok());
/// let err = fits_in_memory(1 << 30, 4 << 30).unwrap_err();
/// assert!(err.to_string().contains("needs about 7168 MiB"));
/// ```
pub fn fits_in_memory(input_bytes: u64, available_bytes: u64) -> Result<(), ImportError> {
    let needed_bytes = input_bytes.saturating_mul(MEMORY_PER_INPUT_BYTE);
    if needed_bytes > available_bytes {
        return Err(ImportError::TooLarge { input_bytes, needed_bytes, available_bytes });
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo; `None` where there is no such file.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A company A or B employee as read, validated field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEmployee {
    /// Where it came from.
    pub origin: Origin,
    /// Its company.
    pub company: Company,
    /// `A-<emp_no>` / `B-<employeeId>`.
    pub source_id: String,
    /// Korean name.
    pub name: String,
    /// Latin-script name.
    pub name_en: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<Sensitive<String>>,
    /// Birth date.
    pub birth_date: Option<Sensitive<NaiveDate>>,
    /// Hex SHA-256 of the national id, lower case.
    pub person_key: Option<Sensitive<String>>,
    /// Unified org unit id it names.
    pub org_unit: String,
    /// Unified grade.
    pub grade: String,
    /// Status.
    pub status: EmployeeStatus,
    /// Hire date.
    pub hire_date: NaiveDate,
    /// Manager's source id (`A-…` / `B-…`), unresolved.
    pub manager_source_id: Option<String>,
    /// Salary and currency.
    pub salary: Option<(Sensitive<u64>, String)>,
    /// Last change, UTC.
    pub updated_at: DateTime<Utc>,
}

/// A company A department or company B org unit as read.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceOrgUnit {
    /// Where it came from.
    pub origin: Origin,
    /// Its company.
    pub company: Company,
    /// `A-<dept_code>` / `B-<orgUnitId>`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Parent's unified id; `None` = top level of its company.
    pub parent: Option<String>,
    /// Leader's source id, unresolved.
    pub leader_source_id: Option<String>,
    /// Last change, UTC.
    pub updated_at: DateTime<Utc>,
}

/// A master data row as read.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMasterData {
    /// Where it came from.
    pub origin: Origin,
    /// Code set.
    pub set: String,
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Extra columns.
    pub attributes: BTreeMap<String, String>,
}

/// Grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionOp {
    /// Grant the role.
    Grant,
    /// Revoke it.
    Revoke,
}

/// A permission event as read.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePermission {
    /// Where it came from.
    pub origin: Origin,
    /// Employee id as written (unified, or a source id of a merged person).
    pub employee: String,
    /// System.
    pub system: String,
    /// Role.
    pub role: String,
    /// Grant or revoke.
    pub op: PermissionOp,
    /// Expiry.
    pub expires: Option<NaiveDate>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Everything read from one input directory.
#[derive(Debug, Default, Clone)]
pub struct SourceData {
    /// Both companies' employees.
    pub employees: Vec<SourceEmployee>,
    /// Both companies' org units.
    pub org_units: Vec<SourceOrgUnit>,
    /// Master data rows.
    pub master_data: Vec<SourceMasterData>,
    /// Permission events.
    pub permissions: Vec<SourcePermission>,
    /// Records rejected while reading.
    pub quarantined: Vec<Quarantined>,
}

/// Reads an input directory laid out as the README's "Input contract" describes.
///
/// Records are streamed (each is held only while it is read, and one over
/// 1 MiB is quarantined unread), but the merge holds the whole state: an input
/// whose merge would not fit in the available memory is refused up front
/// ([`ImportError::TooLarge`], see [`fits_in_memory`]).
///
/// Company A's files are read on a second thread while company B's and the
/// shared files are read on this one; the merge does not depend on record
/// order, so the result is the same as reading them one after another.
pub fn load_input_dir(dir: &Path, mapping: &Mapping) -> Result<SourceData, ImportError> {
    if let Some(available) = available_memory() {
        let input: u64 = [A_EMPLOYEES, A_DEPARTMENTS, B_EMPLOYEES, B_ORG_UNITS, MASTER_DATA, PERMISSIONS]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum();
        fits_in_memory(input, available)?;
    }
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            let mut data = SourceData::default();
            read_a_employees(dir, mapping, &mut data)?;
            read_a_departments(dir, mapping, &mut data)?;
            Ok::<_, ImportError>(data)
        });
        let b = (|| {
            let mut data = SourceData::default();
            read_b_employees(dir, mapping, &mut data)?;
            read_b_org_units(dir, &mut data)?;
            if dir.join(MASTER_DATA).exists() {
                read_master_data(dir, &mut data)?;
            }
            if dir.join(PERMISSIONS).exists() {
                read_permissions(dir, &mut data)?;
            }
            Ok::<_, ImportError>(data)
        })();
        // A panic in the reader is a bug, never caused by input (the fuzz tests hold that).
        (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
    });
    // Company A's error first, as when the files were read in order.
    let mut data = a?;
    let b = b?;
    data.employees.extend(b.employees);
    data.org_units.extend(b.org_units);
    data.master_data.extend(b.master_data);
    data.permissions.extend(b.permissions);
    data.quarantined.extend(b.quarantined);
    Ok(data)
}

/// A field-level problem: reason code and the detail naming the field.
type FieldError = (Reason, String);

fn missing(field: &str) -> FieldError {
    (Reason::MissingField, format!("field `{field}` is empty or absent"))
}

fn open(dir: &Path, file: &'static str) -> Result<RecordReader<BufReader<File>>, ImportError> {
    let path = dir.join(file);
    let handle = File::open(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ImportError::Missing { file: file.to_string(), path: path.clone() }
        } else {
            ImportError::Io { file: file.to_string(), source }
        }
    })?;
    let quote_aware = file.ends_with(".csv");
    Ok(RecordReader::new(BufReader::with_capacity(1 << 16, handle), DEFAULT_MAX_RECORD_BYTES, quote_aware))
}

/// Iterates a file's records as UTF-8 text, quarantining over-long ones.
fn for_each_record(
    dir: &Path,
    file: &'static str,
    quarantined: &mut Vec<Quarantined>,
    mut each: impl FnMut(u64, &str) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut reader = open(dir, file)?;
    let mut first = true;
    loop {
        let next = reader.next_record().map_err(|source| ImportError::Io { file: file.to_string(), source })?;
        let Some((line, record)) = next else { return Ok(()) };
        match record {
            RawRecord::TooLong(bytes) => quarantined.push(Origin { file, line }.quarantine(
                None,
                Reason::MalformedRow,
                format!("record is {bytes} bytes, over the {DEFAULT_MAX_RECORD_BYTES}-byte limit"),
            )),
            RawRecord::Bytes(mut bytes) => {
                if first && bytes.starts_with(b"\xEF\xBB\xBF") {
                    bytes.drain(..3);
                }
                let text = std::str::from_utf8(&bytes).map_err(|_| ImportError::InvalidUtf8 { file: file.to_string(), line })?;
                each(line, text)?;
            }
        }
        first = false;
    }
}

/// Splits one CSV record into fields, reusing one parser per file (building
/// a CSV parser per row cost more than everything else in the merge).
struct CsvFieldParser {
    reader: csv_core::Reader,
    output: Vec<u8>,
}

impl CsvFieldParser {
    fn new() -> Self {
        CsvFieldParser { reader: csv_core::Reader::new(), output: Vec::new() }
    }

    fn fields(&mut self, text: &str) -> Result<Vec<String>, String> {
        use csv_core::ReadFieldResult;
        self.reader.reset();
        // A field is never longer than its record, so one call writes a whole field.
        self.output.resize(text.len().max(1), 0);
        let mut input = text.as_bytes();
        let mut fields = Vec::new();
        let mut field = Vec::new();
        loop {
            // Once `input` is empty, passing it again tells the parser the record ended.
            let (result, read, written) = self.reader.read_field(input, &mut self.output);
            input = &input[read..];
            field.extend_from_slice(&self.output[..written]);
            match result {
                ReadFieldResult::InputEmpty | ReadFieldResult::OutputFull => {}
                ReadFieldResult::Field { record_end } => {
                    fields.push(String::from_utf8(std::mem::take(&mut field)).map_err(|_| "not valid UTF-8".to_string())?);
                    if record_end {
                        return Ok(fields);
                    }
                }
                ReadFieldResult::End => return if fields.is_empty() { Err("empty record".into()) } else { Ok(fields) },
            }
        }
    }
}

/// Reads a CSV file: checks the header, then hands each row as a column map.
fn read_csv(
    dir: &Path,
    file: &'static str,
    required: &[&str],
    id_prefix: Option<&str>,
    quarantined: &mut Vec<Quarantined>,
    mut row: impl FnMut(Origin, &CsvRow<'_>),
) -> Result<(), ImportError> {
    let expected = required.join(",");
    let mut header: Option<Vec<String>> = None;
    let mut local_quarantine = Vec::new();
    let mut parser = CsvFieldParser::new();
    for_each_record(dir, file, quarantined, |line, text| {
        let origin = Origin { file, line };
        let Some(columns) = &header else {
            let fields =
                parser.fields(text).map_err(|_| ImportError::WrongHeader { file: file.into(), missing: expected.clone(), expected: expected.clone() })?;
            let names: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
            let absent: Vec<&str> = required.iter().copied().filter(|c| !names.iter().any(|n| n == c)).collect();
            if line != 1 || !absent.is_empty() {
                return Err(ImportError::WrongHeader {
                    file: file.into(),
                    missing: if absent.is_empty() { "(header must be on line 1)".into() } else { absent.join(",") },
                    expected: expected.clone(),
                });
            }
            header = Some(names);
            return Ok(());
        };
        match parser.fields(text) {
            Err(detail) => local_quarantine.push(origin.quarantine(None, Reason::MalformedRow, detail)),
            Ok(fields) if fields.len() != columns.len() => local_quarantine.push(origin.quarantine(
                id_prefix.and_then(|p| fields.first().map(|f| f.trim()).filter(|s| !s.is_empty()).map(|s| format!("{p}{s}"))),
                Reason::MalformedRow,
                format!("row has {} fields, the header has {}", fields.len(), columns.len()),
            )),
            Ok(fields) => row(origin, &CsvRow { columns, fields: &fields }),
        }
        Ok(())
    })?;
    quarantined.extend(local_quarantine);
    if header.is_none() {
        return Err(ImportError::Empty { file: file.into(), expected });
    }
    Ok(())
}

/// One CSV row addressed by column name.
struct CsvRow<'a> {
    columns: &'a [String],
    fields: &'a [String],
}

impl CsvRow<'_> {
    fn get(&self, column: &str) -> &str {
        self.columns.iter().position(|c| c == column).and_then(|i| self.fields.get(i)).map(|f| f.trim()).unwrap_or("")
    }
    fn optional(&self, column: &str) -> Option<String> {
        Some(self.get(column)).filter(|s| !s.is_empty()).map(str::to_string)
    }
    fn required(&self, column: &str) -> Result<&str, FieldError> {
        Some(self.get(column)).filter(|s| !s.is_empty()).ok_or_else(|| missing(column))
    }
}

fn parse_compact_date(value: &str, field: &str) -> Result<NaiveDate, FieldError> {
    if value.len() != 8 {
        return Err((Reason::InvalidDate, format!("field `{field}` is not a YYYYMMDD date")));
    }
    NaiveDate::parse_from_str(value, "%Y%m%d").map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYYMMDD date")))
}

fn parse_iso_date(value: &str, field: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYY-MM-DD date")))
}

fn parse_local_timestamp(value: &str, field: &str, offset_hours: i32) -> Result<DateTime<Utc>, FieldError> {
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYY-MM-DD HH:MM:SS timestamp")))?;
    let offset = FixedOffset::east_opt(offset_hours * 3600).ok_or_else(|| (Reason::InvalidDate, format!("UTC offset {offset_hours} h is out of range")))?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| (Reason::InvalidDate, format!("field `{field}` is not a valid local time")))
}

fn parse_rfc3339(value: &str, field: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not an RFC 3339 timestamp")))
}

/// A structural check (`local@domain.tld`, no spaces); deliverability is the
/// mail system's business, not ours.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 255
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_email(value: Option<String>, field: &str) -> Result<Option<String>, FieldError> {
    match value {
        Some(email) if !is_plausible_email(&email) => Err((Reason::InvalidEmail, format!("field `{field}` is not a valid email address"))),
        other => Ok(other),
    }
}

fn check_person_key(value: Option<String>, field: &str) -> Result<Option<Sensitive<String>>, FieldError> {
    match value {
        None => Ok(None),
        Some(key) if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Some(Sensitive::new(key.to_ascii_lowercase()))),
        Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not a 64-digit hex SHA-256"))),
    }
}

fn read_a_employees(dir: &Path, mapping: &Mapping, data: &mut SourceData) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    read_csv(dir, A_EMPLOYEES, &A_EMPLOYEE_COLUMNS, Some("A-"), &mut data.quarantined, |origin, row| {
        let id = row.optional("emp_no").map(|n| format!("A-{n}"));
        match parse_a_employee(origin.clone(), row, mapping) {
            Ok(e) => rows.push(e),
            Err((reason, detail)) => bad.push(origin.quarantine(id, reason, detail)),
        }
    })?;
    data.employees.extend(rows);
    data.quarantined.extend(bad);
    Ok(())
}

fn parse_a_employee(origin: Origin, row: &CsvRow<'_>, mapping: &Mapping) -> Result<SourceEmployee, FieldError> {
    let emp_no = row.required("emp_no")?;
    let name = row.required("name")?;
    let dept = row.required("dept_code")?;
    let rank = row.required("rank")?;
    let grade = mapping.grade_a(rank).ok_or_else(|| (Reason::UnknownGrade, format!("field `rank`: {rank:?} is not in mapping grades.company_a")))?;
    let hire_date = parse_compact_date(row.required("hire_date")?, "hire_date")?;
    let status = match row.required("status")? {
        "재직" => EmployeeStatus::Active,
        "휴직" => EmployeeStatus::OnLeave,
        "퇴직" => EmployeeStatus::Terminated,
        other => return Err((Reason::MalformedRow, format!("field `status`: {other:?} is not 재직, 휴직 or 퇴직"))),
    };
    let email = check_email(row.optional("email"), "email")?;
    let birth_date = row.optional("birth_date").map(|d| parse_compact_date(&d, "birth_date")).transpose()?;
    let updated_at = parse_local_timestamp(row.required("updated_at")?, "updated_at", mapping.company_a.utc_offset_hours)?;
    let person_key = check_person_key(row.optional("person_key"), "person_key")?;
    let salary = row
        .optional("base_salary")
        .map(|s| {
            s.parse::<u64>()
                .map(|amount| (Sensitive::new(amount), mapping.company_a.salary_currency.clone()))
                .map_err(|_| (Reason::MalformedRow, "field `base_salary` is not a whole non-negative number".to_string()))
        })
        .transpose()?;
    Ok(SourceEmployee {
        origin,
        company: Company::A,
        source_id: format!("A-{emp_no}"),
        name: name.to_string(),
        name_en: row.optional("name_en"),
        email,
        phone: row.optional("phone").map(Sensitive::new),
        birth_date: birth_date.map(Sensitive::new),
        person_key,
        org_unit: format!("A-{dept}"),
        grade: grade.to_string(),
        status,
        hire_date,
        manager_source_id: row.optional("manager_emp_no").map(|m| format!("A-{m}")),
        salary,
        updated_at,
    })
}

fn read_a_departments(dir: &Path, mapping: &Mapping, data: &mut SourceData) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    read_csv(dir, A_DEPARTMENTS, &A_DEPARTMENT_COLUMNS, Some("A-"), &mut data.quarantined, |origin, row| {
        let id = row.optional("dept_code").map(|c| format!("A-{c}"));
        let parsed = (|| -> Result<SourceOrgUnit, FieldError> {
            let code = row.required("dept_code")?;
            Ok(SourceOrgUnit {
                origin: origin.clone(),
                company: Company::A,
                id: format!("A-{code}"),
                name: row.required("dept_name")?.to_string(),
                parent: row.optional("parent_dept_code").map(|p| format!("A-{p}")),
                leader_source_id: row.optional("leader_emp_no").map(|l| format!("A-{l}")),
                updated_at: parse_local_timestamp(row.required("updated_at")?, "updated_at", mapping.company_a.utc_offset_hours)?,
            })
        })();
        match parsed {
            Ok(unit) => rows.push(unit),
            Err((reason, detail)) => bad.push(origin.quarantine(id, reason, detail)),
        }
    })?;
    data.org_units.extend(rows);
    data.quarantined.extend(bad);
    Ok(())
}

/// Reads a JSONL file, handing each line's object to `row`.
fn read_jsonl(dir: &Path, file: &'static str, quarantined: &mut Vec<Quarantined>, mut row: impl FnMut(Origin, &Map<String, Value>)) -> Result<(), ImportError> {
    let mut bad = Vec::new();
    for_each_record(dir, file, quarantined, |line, text| {
        let origin = Origin { file, line };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => row(origin, &object),
            Ok(_) => bad.push(origin.quarantine(None, Reason::MalformedRow, "line is JSON but not an object")),
            Err(e) => bad.push(origin.quarantine(None, Reason::MalformedRow, format!("not valid JSON: {}", crate::envelope::describe_json_error(&e)))),
        }
        Ok(())
    })?;
    quarantined.extend(bad);
    Ok(())
}

/// Typed access to one JSON object's fields, with errors that name the field.
struct JsonRow<'a>(&'a Map<String, Value>);

impl JsonRow<'_> {
    fn present(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }
    fn id(&self, field: &str) -> Result<Option<u64>, FieldError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| (Reason::MalformedRow, format!("field `{field}` is not a non-negative integer"))),
        }
    }
    fn required_id(&self, field: &str) -> Result<u64, FieldError> {
        self.id(field)?.ok_or_else(|| missing(field))
    }
    fn text(&self, field: &str) -> Result<Option<String>, FieldError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not a string"))),
        }
    }
    fn required_text(&self, field: &str) -> Result<String, FieldError> {
        self.text(field)?.ok_or_else(|| missing(field))
    }
    fn bool(&self, field: &str) -> Result<bool, FieldError> {
        match self.present(field) {
            None => Err(missing(field)),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not true or false"))),
        }
    }
}

fn read_b_employees(dir: &Path, mapping: &Mapping, data: &mut SourceData) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    read_jsonl(dir, B_EMPLOYEES, &mut data.quarantined, |origin, object| {
        let row = JsonRow(object);
        let id = row.id("employeeId").ok().flatten().map(|n| format!("B-{n}"));
        match parse_b_employee(origin.clone(), &row, mapping) {
            Ok(e) => rows.push(e),
            Err((reason, detail)) => bad.push(origin.quarantine(id, reason, detail)),
        }
    })?;
    data.employees.extend(rows);
    data.quarantined.extend(bad);
    Ok(())
}

fn parse_b_employee(origin: Origin, row: &JsonRow<'_>, mapping: &Mapping) -> Result<SourceEmployee, FieldError> {
    let id = row.required_id("employeeId")?;
    let first = row.text("firstName")?;
    let last = row.text("lastName")?;
    let name = match row.text("displayNameKo")? {
        Some(n) => n,
        None => match (&last, &first) {
            (Some(l), Some(f)) => format!("{l}{f}"),
            _ => return Err(missing("displayNameKo")),
        },
    };
    let name_en = match (first, last) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => None,
    };
    let org = row.required_id("orgUnitId")?;
    let grade_code = row.required_text("grade")?;
    let grade =
        mapping.grade_b(&grade_code).ok_or_else(|| (Reason::UnknownGrade, format!("field `grade`: {grade_code:?} is not in mapping grades.company_b")))?;
    let hire_date = parse_iso_date(&row.required_text("startDate")?, "startDate")?;
    let active = row.bool("active")?;
    let on_leave = match row.present("leave") {
        None => false,
        Some(Value::String(_)) => true,
        Some(_) => return Err((Reason::MalformedRow, "field `leave` is neither null nor a string".into())),
    };
    let status = match (active, on_leave) {
        (false, _) => EmployeeStatus::Terminated,
        (true, true) => EmployeeStatus::OnLeave,
        (true, false) => EmployeeStatus::Active,
    };
    let email = check_email(row.text("email")?, "email")?;
    let birth_date = row.text("birthDate")?.map(|d| parse_iso_date(&d, "birthDate")).transpose()?;
    let updated_at = parse_rfc3339(&row.required_text("lastModified")?, "lastModified")?;
    let person_key = check_person_key(row.text("personKey")?, "personKey")?;
    let salary = match row.present("salary") {
        None => None,
        Some(Value::Object(s)) => {
            let amount = s
                .get("amount")
                .and_then(Value::as_u64)
                .ok_or_else(|| (Reason::MalformedRow, "field `salary.amount` is not a whole non-negative number".to_string()))?;
            let currency = s
                .get("currency")
                .and_then(Value::as_str)
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
                .ok_or_else(|| (Reason::MalformedRow, "field `salary.currency` is not an ISO 4217 code".to_string()))?;
            Some((Sensitive::new(amount), currency.to_string()))
        }
        Some(_) => return Err((Reason::MalformedRow, "field `salary` is neither null nor an object".into())),
    };
    Ok(SourceEmployee {
        origin,
        company: Company::B,
        source_id: format!("B-{id}"),
        name,
        name_en,
        email,
        phone: row.text("phone")?.map(Sensitive::new),
        birth_date: birth_date.map(Sensitive::new),
        person_key,
        org_unit: format!("B-{org}"),
        grade: grade.to_string(),
        status,
        hire_date,
        manager_source_id: row.id("managerId")?.map(|m| format!("B-{m}")),
        salary,
        updated_at,
    })
}

fn read_b_org_units(dir: &Path, data: &mut SourceData) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    read_jsonl(dir, B_ORG_UNITS, &mut data.quarantined, |origin, object| {
        let row = JsonRow(object);
        let id = row.id("orgUnitId").ok().flatten().map(|n| format!("B-{n}"));
        let parsed = (|| -> Result<SourceOrgUnit, FieldError> {
            Ok(SourceOrgUnit {
                origin: origin.clone(),
                company: Company::B,
                id: format!("B-{}", row.required_id("orgUnitId")?),
                name: row.required_text("name")?,
                parent: row.id("parentId")?.map(|p| format!("B-{p}")),
                leader_source_id: row.id("headId")?.map(|h| format!("B-{h}")),
                updated_at: parse_rfc3339(&row.required_text("lastModified")?, "lastModified")?,
            })
        })();
        match parsed {
            Ok(unit) => rows.push(unit),
            Err((reason, detail)) => bad.push(origin.quarantine(id, reason, detail)),
        }
    })?;
    data.org_units.extend(rows);
    data.quarantined.extend(bad);
    Ok(())
}

fn read_master_data(dir: &Path, data: &mut SourceData) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    read_csv(dir, MASTER_DATA, &MASTER_DATA_COLUMNS, None, &mut data.quarantined, |origin, row| {
        let id = match (row.optional("set"), row.optional("code")) {
            (Some(s), Some(c)) => Some(format!("{s}:{c}")),
            _ => None,
        };
        let parsed = (|| -> Result<SourceMasterData, FieldError> {
            let attributes =
                row.columns.iter().filter(|c| !MASTER_DATA_COLUMNS.contains(&c.as_str())).filter_map(|c| row.optional(c).map(|v| (c.clone(), v))).collect();
            Ok(SourceMasterData {
                origin: origin.clone(),
                set: row.required("set")?.to_string(),
                code: row.required("code")?.to_string(),
                name: row.required("name")?.to_string(),
                attributes,
            })
        })();
        match parsed {
            Ok(md) => rows.push(md),
            Err((reason, detail)) => bad.push(origin.quarantine(id, reason, detail)),
        }
    })?;
    data.master_data.extend(rows);
    data.quarantined.extend(bad);
    Ok(())
}

fn read_permissions(dir: &Path, data: &mut SourceData) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    read_jsonl(dir, PERMISSIONS, &mut data.quarantined, |origin, object| {
        let row = JsonRow(object);
        let id = match (row.text("employee"), row.text("system"), row.text("role")) {
            (Ok(Some(e)), Ok(Some(s)), Ok(Some(r))) => Some(format!("{e}:{s}:{r}")),
            _ => None,
        };
        let parsed = (|| -> Result<SourcePermission, FieldError> {
            let op = match row.required_text("op")?.as_str() {
                "grant" => PermissionOp::Grant,
                "revoke" => PermissionOp::Revoke,
                _ => return Err((Reason::MalformedRow, "field `op` is neither \"grant\" nor \"revoke\"".into())),
            };
            Ok(SourcePermission {
                origin: origin.clone(),
                employee: row.required_text("employee")?,
                system: row.required_text("system")?,
                role: row.required_text("role")?,
                op,
                expires: row.text("expires")?.map(|d| parse_iso_date(&d, "expires")).transpose()?,
                at: parse_rfc3339(&row.required_text("at")?, "at")?,
            })
        })();
        match parsed {
            Ok(p) => rows.push(p),
            Err((reason, detail)) => bad.push(origin.quarantine(id, reason, detail)),
        }
    })?;
    data.permissions.extend(rows);
    data.quarantined.extend(bad);
    Ok(())
}
