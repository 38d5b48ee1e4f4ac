//! Company B's JSON-lines exports: `employees.jsonl` and `org_units.jsonl`.

use super::fields::{check_email, check_person_key, missing, parse_iso_date, parse_rfc3339, FieldError};
use super::files::{B_EMPLOYEES, B_ORG_UNITS};
use super::jsonl::{JsonRow, Jsonl};
use super::reader::{read_file, Parsed};
use super::source::{SourceEmployee, SourceOrgUnit};
use super::ImportError;
use crate::mapping::Mapping;
use crate::quarantine::{Origin, Reason};
use crate::schema::{Company, EmployeeStatus};
use crate::Sensitive;
use serde_json::Value;
use std::path::Path;

pub(crate) fn employees(dir: &Path, mapping: &Mapping) -> Result<Parsed<SourceEmployee>, ImportError> {
    let id_of = |row: &JsonRow<'_>| row.id("employeeId").ok().flatten().map(|n| format!("B-{n}"));
    read_file(dir, B_EMPLOYEES, &Jsonl, id_of, |origin, row| parse_employee(origin, row, mapping))
}

pub(crate) fn org_units(dir: &Path) -> Result<Parsed<SourceOrgUnit>, ImportError> {
    let id_of = |row: &JsonRow<'_>| row.id("orgUnitId").ok().flatten().map(|n| format!("B-{n}"));
    read_file(dir, B_ORG_UNITS, &Jsonl, id_of, parse_org_unit)
}

fn parse_employee(origin: Origin, row: &JsonRow<'_>, mapping: &Mapping) -> Result<SourceEmployee, FieldError> {
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
        (Some(f), Some(l)) => Some([f.as_str(), " ", &l].concat()),
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
        source_id: ["B-", &id].concat(),
        name,
        name_en,
        email,
        phone: row.text("phone")?.map(Sensitive::new),
        birth_date: birth_date.map(Sensitive::new),
        person_key,
        org_unit: ["B-", &org].concat(),
        grade: grade.to_string(),
        status,
        hire_date,
        manager_source_id: row.id("managerId")?.map(|m| ["B-", &m].concat()),
        salary,
        updated_at,
    })
}

fn parse_org_unit(origin: Origin, row: &JsonRow<'_>) -> Result<SourceOrgUnit, FieldError> {
    Ok(SourceOrgUnit {
        origin,
        company: Company::B,
        id: ["B-", &row.required_id("orgUnitId")?].concat(),
        name: row.required_text("name")?,
        parent: row.id("parentId")?.map(|p| ["B-", &p].concat()),
        leader_source_id: row.id("headId")?.map(|h| ["B-", &h].concat()),
        updated_at: parse_rfc3339(&row.required_text("lastModified")?, "lastModified")?,
    })
}
