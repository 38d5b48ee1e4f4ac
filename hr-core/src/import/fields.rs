//! Field-level parsing and validation shared by every reader: a failure is
//! a quarantine reason and a detail that names the field, never its value.

use crate::quarantine::Reason;
use crate::Sensitive;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A field-level problem: reason code and the detail naming the field.
pub(crate) type FieldError = (Reason, String);

pub(crate) fn missing(field: &str) -> FieldError {
    (Reason::MissingField, format!("field `{field}` is empty or absent"))
}

pub(crate) fn parse_compact_date(value: &str, field: &str) -> Result<NaiveDate, FieldError> {
    if value.len() != 8 {
        return Err((Reason::InvalidDate, format!("field `{field}` is not a YYYYMMDD date")));
    }
    NaiveDate::parse_from_str(value, "%Y%m%d").map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYYMMDD date")))
}

pub(crate) fn parse_iso_date(value: &str, field: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYY-MM-DD date")))
}

pub(crate) fn parse_local_timestamp(value: &str, field: &str, offset_hours: i32) -> Result<DateTime<Utc>, FieldError> {
    let naive = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYY-MM-DD HH:MM:SS timestamp")))?;
    let offset = FixedOffset::east_opt(offset_hours * 3600).ok_or_else(|| (Reason::InvalidDate, format!("UTC offset {offset_hours} h is out of range")))?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| (Reason::InvalidDate, format!("field `{field}` is not a valid local time")))
}

pub(crate) fn parse_rfc3339(value: &str, field: &str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not an RFC 3339 timestamp")))
}

/// A structural check (`local@domain.tld`, no spaces); deliverability is the
/// mail system's business, not ours.
pub(crate) fn is_plausible_email(email: &str) -> bool {
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

/// Longest id accepted from an export, in bytes.
const MAX_ID_BYTES: usize = 128;

/// An id as records and keys use it: letters, digits, `-`, `_` and `.` only.
/// Ids become parts of record keys, where `:` separates the parts (a grant's
/// key is `<employee>:<system>:<role>`, and routing reads the system from
/// it) and whitespace would be invisible in reports.
pub(crate) fn check_id<'a>(text: &'a str, field: &str) -> Result<&'a str, FieldError> {
    let valid = !text.is_empty() && text.len() <= MAX_ID_BYTES && text.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        return Ok(text);
    }
    Err((Reason::MalformedRow, format!("field `{field}` holds characters an id may not: only letters, digits, '-', '_' and '.', at most {MAX_ID_BYTES} bytes")))
}

/// [`check_id`] for an optional field.
pub(crate) fn check_optional_id(value: Option<String>, field: &str) -> Result<Option<String>, FieldError> {
    value.map(|id| check_id(&id, field).map(str::to_string)).transpose()
}

pub(crate) fn check_email(value: Option<String>, field: &str) -> Result<Option<String>, FieldError> {
    match value {
        Some(email) if !is_plausible_email(&email) => Err((Reason::InvalidEmail, format!("field `{field}` is not a valid email address"))),
        other => Ok(other),
    }
}

pub(crate) fn check_person_key(value: Option<String>, field: &str) -> Result<Option<Sensitive<String>>, FieldError> {
    match value {
        None => Ok(None),
        Some(key) if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Some(Sensitive::new(key.to_ascii_lowercase()))),
        Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not a 64-digit hex SHA-256"))),
    }
}
