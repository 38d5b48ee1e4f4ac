//! Company A's CSV exports: `employees.csv` and `departments.csv`.

use super::csv::{Csv, CsvRow};
use super::fields::{check_email, check_id, check_person_key, concat, not_in_future, parse_compact_date, parse_local_timestamp, prefixed_id, FieldError};
use super::files::{A_DEPARTMENTS, A_DEPARTMENT_COLUMNS, A_EMPLOYEES, A_EMPLOYEE_COLUMNS};
use super::reader::{read_file, Parsed};
use super::source::{SourceEmployee, SourceOrgUnit};
use super::ImportError;
use crate::mapping::Mapping;
use crate::quarantine::{Origin, Reason};
use crate::schema::{Company, EmployeeStatus};
use crate::Sensitive;
use std::path::Path;

const FORMAT: Csv = Csv { required: &A_EMPLOYEE_COLUMNS, id_prefix: Some("A-") };

pub(crate) fn employees(dir: &Path, mapping: &Mapping) -> Result<Parsed<SourceEmployee>, ImportError> {
    let id_of = |row: &CsvRow<'_>| row.optional("emp_no").map(|n| format!("A-{n}"));
    read_file(dir, A_EMPLOYEES, &FORMAT, id_of, |origin, row| parse_employee(origin, row, mapping))
}

pub(crate) fn departments(dir: &Path, mapping: &Mapping) -> Result<Parsed<SourceOrgUnit>, ImportError> {
    let format = Csv { required: &A_DEPARTMENT_COLUMNS, id_prefix: Some("A-") };
    let id_of = |row: &CsvRow<'_>| row.optional("dept_code").map(|c| format!("A-{c}"));
    read_file(dir, A_DEPARTMENTS, &format, id_of, |origin, row| parse_department(origin, row, mapping))
}

fn parse_employee(origin: Origin, row: &CsvRow<'_>, mapping: &Mapping) -> Result<SourceEmployee, FieldError> {
    let emp_no = check_id(row.required("emp_no")?, "emp_no")?;
    let name = row.required("name")?;
    let dept = check_id(row.required("dept_code")?, "dept_code")?;
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
    let termination_date = Some(row.get("termination_date")).filter(|d| !d.is_empty()).map(|d| parse_compact_date(d, "termination_date")).transpose()?;
    let effective_date = Some(row.get("effective_date")).filter(|d| !d.is_empty()).map(|d| parse_compact_date(d, "effective_date")).transpose()?;
    let birth_date = Some(row.get("birth_date")).filter(|d| !d.is_empty()).map(|d| parse_compact_date(d, "birth_date")).transpose()?;
    let updated_at = not_in_future(parse_local_timestamp(row.required("updated_at")?, "updated_at", mapping.company_a.utc_offset_hours)?, "updated_at")?;
    let person_key = check_person_key(Some(row.get("person_key")).filter(|k| !k.is_empty()), "person_key")?;
    let salary = Some(row.get("base_salary"))
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u64>()
                .map(|amount| (Sensitive::new(amount), mapping.company_a.salary_currency.as_str().into()))
                .map_err(|_| (Reason::MalformedRow, "field `base_salary` is not a whole non-negative number".to_string()))
        })
        .transpose()?;
    Ok(SourceEmployee {
        origin,
        company: Company::A,
        source_id: concat(&["A-", emp_no]),
        name: name.into(),
        name_en: row.optional("name_en"),
        email,
        phone: row.optional("phone").map(Sensitive::new),
        birth_date: birth_date.map(Sensitive::new),
        person_key,
        org_unit: concat(&["A-", dept]),
        grade: grade.into(),
        status,
        hire_date,
        termination_date,
        effective_date,
        manager_source_id: prefixed_id("A-", row.get("manager_emp_no"), "manager_emp_no")?,
        salary,
        updated_at,
    })
}

fn parse_department(origin: Origin, row: &CsvRow<'_>, mapping: &Mapping) -> Result<SourceOrgUnit, FieldError> {
    let code = check_id(row.required("dept_code")?, "dept_code")?;
    Ok(SourceOrgUnit {
        origin,
        company: Company::A,
        id: concat(&["A-", code]),
        name: row.required("dept_name")?.into(),
        parent: prefixed_id("A-", row.get("parent_dept_code"), "parent_dept_code")?,
        leader_source_id: prefixed_id("A-", row.get("leader_emp_no"), "leader_emp_no")?,
        updated_at: not_in_future(parse_local_timestamp(row.required("updated_at")?, "updated_at", mapping.company_a.utc_offset_hours)?, "updated_at")?,
    })
}
