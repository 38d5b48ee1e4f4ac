//! The files both companies share: `master_data.csv` and `permissions.jsonl`.

use super::csv::{Csv, CsvRow};
use super::fields::{check_code, check_id, not_in_future, parse_iso_date, parse_rfc3339, FieldError};
use super::files::{MASTER_DATA, MASTER_DATA_COLUMNS, PERMISSIONS};
use super::jsonl::{JsonRow, Jsonl};
use super::reader::{read_file, Parsed};
use super::source::{PermissionOp, SourceMasterData, SourcePermission};
use super::ImportError;
use crate::quarantine::{Origin, Reason};
use std::path::Path;

pub(crate) fn master_data(dir: &Path) -> Result<Parsed<SourceMasterData>, ImportError> {
    master_data_in(dir, MASTER_DATA)
}

/// Rows in `master_data.csv`'s format from the file `file` of `dir`.
pub(crate) fn master_data_in(dir: &Path, file: &'static str) -> Result<Parsed<SourceMasterData>, ImportError> {
    let format = Csv { required: &MASTER_DATA_COLUMNS, id_prefix: None };
    let id_of = |row: &CsvRow<'_>| match (row.optional("set"), row.optional("code")) {
        (Some(s), Some(c)) => Some(format!("{s}:{c}")),
        _ => None,
    };
    read_file(dir, file, &format, id_of, parse_master_data)
}

pub(crate) fn permissions(dir: &Path) -> Result<Parsed<SourcePermission>, ImportError> {
    read_file(dir, PERMISSIONS, &Jsonl::WHOLE, permission_id, parse_permission)
}

/// One line of `permissions.jsonl`'s format, or its quarantine entry.
pub(crate) fn permission_line(origin: Origin, text: &str) -> Result<SourcePermission, crate::Quarantined> {
    let row = JsonRow::parse(text).map_err(|detail| origin.quarantine(None, Reason::MalformedRow, detail))?;
    parse_permission(origin, &row).map_err(|(reason, detail)| origin.quarantine(permission_id(&row), reason, detail))
}

fn permission_id(row: &JsonRow<'_>) -> Option<String> {
    match (row.text("employee"), row.text("system"), row.text("role")) {
        (Ok(Some(e)), Ok(Some(s)), Ok(Some(r))) => Some(format!("{e}:{s}:{r}")),
        _ => None,
    }
}

fn parse_master_data(origin: Origin, row: &CsvRow<'_>) -> Result<SourceMasterData, FieldError> {
    let attributes =
        row.columns().iter().filter(|c| !MASTER_DATA_COLUMNS.contains(&c.as_str())).filter_map(|c| row.optional(c).map(|v| (c.into(), v))).collect();
    Ok(SourceMasterData {
        origin,
        set: check_id(row.required("set")?, "set")?.into(),
        code: check_code(row.required("code")?, "code")?.into(),
        name: row.required("name")?.into(),
        attributes,
    })
}

fn parse_permission(origin: Origin, row: &JsonRow<'_>) -> Result<SourcePermission, FieldError> {
    let op = match row.required_text_ref("op")? {
        "grant" => PermissionOp::Grant,
        "revoke" => PermissionOp::Revoke,
        _ => return Err((Reason::MalformedRow, "field `op` is neither \"grant\" nor \"revoke\"".into())),
    };
    Ok(SourcePermission {
        origin,
        employee: check_id(row.required_text_ref("employee")?, "employee")?.into(),
        system: check_id(row.required_text_ref("system")?, "system")?.into(),
        role: check_code(row.required_text_ref("role")?, "role")?.into(),
        op,
        expires: row.text_ref("expires")?.map(|d| parse_iso_date(d, "expires")).transpose()?,
        effective: row.text_ref("effective")?.map(|d| parse_iso_date(d, "effective")).transpose()?,
        at: not_in_future(parse_rfc3339(row.required_text_ref("at")?, "at")?, "at")?,
    })
}
