//! Company B's JSON-lines exports: `employees.jsonl` and `org_units.jsonl`.

use super::fields::{check_email, check_person_key, concat, missing, not_in_future, parse_iso_date, parse_rfc3339, FieldError};
use super::files::{B_EMPLOYEES, B_ORG_UNITS};
use super::jsonl::{JsonRow, Jsonl};
use super::reader::{read_file, FilePart, Parsed};
use super::source::{SourceEmployee, SourceOrgUnit};
use super::ImportError;
use crate::mapping::Mapping;
use crate::quarantine::{Origin, Reason};
use crate::schema::{Company, EmployeeStatus};
use crate::Sensitive;
use serde_json::Value;
use std::path::Path;

/// The employees in one part of `employees.jsonl` (line numbers count from the part's first line).
pub(crate) fn employees(dir: &Path, mapping: &Mapping, part: FilePart) -> Result<Parsed<SourceEmployee>, ImportError> {
    let id_of = |row: &JsonRow<'_>| row.prefixed_id("employeeId", "B-").ok().flatten().map(String::from);
    read_file(dir, B_EMPLOYEES, &Jsonl(part), id_of, |origin, row| parse_employee(origin, row, mapping))
}

/// The org units in one part of `org_units.jsonl` (line numbers count from the part's first line).
pub(crate) fn org_units(dir: &Path, part: FilePart) -> Result<Parsed<SourceOrgUnit>, ImportError> {
    let id_of = |row: &JsonRow<'_>| row.prefixed_id("orgUnitId", "B-").ok().flatten().map(String::from);
    read_file(dir, B_ORG_UNITS, &Jsonl(part), id_of, parse_org_unit)
}

fn parse_employee(origin: Origin, row: &JsonRow<'_>, mapping: &Mapping) -> Result<SourceEmployee, FieldError> {
    let source_id = row.required_prefixed_id("employeeId", "B-")?;
    let first = row.text_ref("firstName")?;
    let last = row.text_ref("lastName")?;
    let name = match row.text_ref("displayNameKo")? {
        Some(n) => n.into(),
        None => match (last, first) {
            (Some(l), Some(f)) => concat(&[l, f]),
            _ => return Err(missing("displayNameKo")),
        },
    };
    let name_en = match (first, last) {
        (Some(f), Some(l)) => Some(concat(&[f, " ", l])),
        (Some(one), None) | (None, Some(one)) => Some(one.into()),
        (None, None) => None,
    };
    let org_unit = row.required_prefixed_id("orgUnitId", "B-")?;
    let grade_code = row.required_text_ref("grade")?;
    let grade =
        mapping.grade_b(grade_code).ok_or_else(|| (Reason::UnknownGrade, format!("field `grade`: {grade_code:?} is not in mapping grades.company_b")))?;
    let hire_date = parse_iso_date(row.required_text_ref("startDate")?, "startDate")?;
    let active = row.bool("active")?;
    let on_leave = match row.string("leave") {
        None => false,
        Some(Ok(_)) => true,
        Some(Err(_)) => return Err((Reason::MalformedRow, "field `leave` is neither null nor a string".into())),
    };
    let status = match (active, on_leave) {
        (false, _) => EmployeeStatus::Terminated,
        (true, true) => EmployeeStatus::OnLeave,
        (true, false) => EmployeeStatus::Active,
    };
    let email = check_email(row.text("email")?, "email")?;
    let termination_date = row.text_ref("endDate")?.map(|d| parse_iso_date(d, "endDate")).transpose()?;
    let effective_date = row.text_ref("effectiveDate")?.map(|d| parse_iso_date(d, "effectiveDate")).transpose()?;
    let birth_date = row.text_ref("birthDate")?.map(|d| parse_iso_date(d, "birthDate")).transpose()?;
    let updated_at = not_in_future(parse_rfc3339(row.required_text_ref("lastModified")?, "lastModified")?, "lastModified")?;
    let person_key = check_person_key(row.text_ref("personKey")?, "personKey")?;
    let salary = match row.string("salary") {
        None => None,
        Some(Err(Value::Object(s))) => {
            let amount = s
                .get("amount")
                .and_then(Value::as_u64)
                .ok_or_else(|| (Reason::MalformedRow, "field `salary.amount` is not a whole non-negative number".to_string()))?;
            let currency = s
                .get("currency")
                .and_then(Value::as_str)
                .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
                .ok_or_else(|| (Reason::MalformedRow, "field `salary.currency` is not an ISO 4217 code".to_string()))?;
            Some((Sensitive::new(amount), currency.into()))
        }
        Some(_) => return Err((Reason::MalformedRow, "field `salary` is neither null nor an object".into())),
    };
    Ok(SourceEmployee {
        origin,
        company: Company::B,
        source_id,
        name,
        name_en,
        email,
        phone: row.text("phone")?.map(Sensitive::new),
        birth_date: birth_date.map(Sensitive::new),
        person_key,
        org_unit,
        grade: grade.into(),
        status,
        hire_date,
        termination_date,
        effective_date,
        manager_source_id: row.prefixed_id("managerId", "B-")?,
        salary,
        updated_at,
    })
}

fn parse_org_unit(origin: Origin, row: &JsonRow<'_>) -> Result<SourceOrgUnit, FieldError> {
    Ok(SourceOrgUnit {
        origin,
        company: Company::B,
        id: row.required_prefixed_id("orgUnitId", "B-")?,
        name: row.required_text("name")?,
        parent: row.prefixed_id("parentId", "B-")?,
        leader_source_id: row.prefixed_id("headId", "B-")?,
        updated_at: not_in_future(parse_rfc3339(row.required_text_ref("lastModified")?, "lastModified")?, "lastModified")?,
    })
}
