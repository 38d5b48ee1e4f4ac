//! Field-level parsing and validation shared by every reader: a failure is
//! a quarantine reason and a detail that names the field, never its value.

use super::source::PersonKey;
use crate::quarantine::Reason;
use crate::Sensitive;
use chrono::format::{Item, Numeric, Pad, Parsed};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use compact_str::CompactString;

/// A field-level problem: reason code and the detail naming the field.
pub(crate) type FieldError = (Reason, String);

pub(crate) fn missing(field: &str) -> FieldError {
    (Reason::MissingField, format!("field `{field}` is empty or absent"))
}

// The items `%Y%m%d`, `%Y-%m-%d` and `%Y-%m-%d %H:%M:%S` stand for, spelled
// out once: `parse_from_str` would re-read the format string for every field.
const COMPACT_DATE: &[Item<'static>] = &[num(Numeric::Year), num(Numeric::Month), num(Numeric::Day)];
const ISO_DATE: &[Item<'static>] = &[num(Numeric::Year), Item::Literal("-"), num(Numeric::Month), Item::Literal("-"), num(Numeric::Day)];
const LOCAL_TIMESTAMP: &[Item<'static>] = &[
    num(Numeric::Year),
    Item::Literal("-"),
    num(Numeric::Month),
    Item::Literal("-"),
    num(Numeric::Day),
    Item::Space(" "),
    num(Numeric::Hour),
    Item::Literal(":"),
    num(Numeric::Minute),
    Item::Literal(":"),
    num(Numeric::Second),
];

const fn num(n: Numeric) -> Item<'static> {
    Item::Numeric(n, Pad::Zero)
}

/// `value` parsed by `items` and completed by `finish`; `None` if it does not fit.
fn parse_with<T>(value: &str, items: &[Item<'static>], finish: impl Fn(&Parsed) -> chrono::ParseResult<T>) -> Option<T> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, value, items.iter()).ok()?;
    finish(&parsed).ok()
}

// Every export writes its dates in one fixed form, which the fast paths
// below read digit by digit (chrono's general parser was a tenth of the
// reading); whatever they do not take, chrono decides, so what is accepted
// and how it reads never differs from chrono's (a property test holds that).

/// The number `text` spells in ASCII digits, if it holds only digits.
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

/// `YYYY`, `MM`, `DD` at the given byte offsets of `text`, as a date.
fn fixed_date(text: &[u8], year: usize, month: usize, day: usize) -> Option<NaiveDate> {
    let year = i32::try_from(digits(text.get(year..year + 4)?)?).ok()?;
    NaiveDate::from_ymd_opt(year, digits(text.get(month..month + 2)?)?, digits(text.get(day..day + 2)?)?)
}

/// `YYYY-MM-DD?HH:MM:SS` with `separator` at `?`, exactly.
fn fixed_datetime(text: &[u8], separator: u8) -> Option<chrono::NaiveDateTime> {
    if text.len() != 19 || text[4] != b'-' || text[7] != b'-' || text[10] != separator || text[13] != b':' || text[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(&text[11..13])?, digits(&text[14..16])?, digits(&text[17..19])?);
    // A leap second (60) is left to chrono.
    if second > 59 {
        return None;
    }
    fixed_date(text, 0, 5, 8)?.and_hms_opt(hour, minute, second)
}

pub(crate) fn parse_compact_date(value: &str, field: &str) -> Result<NaiveDate, FieldError> {
    if value.len() != 8 {
        return Err((Reason::InvalidDate, format!("field `{field}` is not a YYYYMMDD date")));
    }
    if let Some(date) = fixed_date(value.as_bytes(), 0, 4, 6) {
        return Ok(date);
    }
    parse_with(value, COMPACT_DATE, Parsed::to_naive_date).ok_or_else(|| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYYMMDD date")))
}

pub(crate) fn parse_iso_date(value: &str, field: &str) -> Result<NaiveDate, FieldError> {
    let text = value.as_bytes();
    if text.len() == 10 && text[4] == b'-' && text[7] == b'-' {
        if let Some(date) = fixed_date(text, 0, 5, 8) {
            return Ok(date);
        }
    }
    parse_with(value, ISO_DATE, Parsed::to_naive_date).ok_or_else(|| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYY-MM-DD date")))
}

pub(crate) fn parse_local_timestamp(value: &str, field: &str, offset_hours: i32) -> Result<DateTime<Utc>, FieldError> {
    let naive = fixed_datetime(value.as_bytes(), b' ')
        .or_else(|| parse_with(value, LOCAL_TIMESTAMP, |p| p.to_naive_datetime_with_offset(0)))
        .ok_or_else(|| (Reason::InvalidDate, format!("field `{field}` is not a valid YYYY-MM-DD HH:MM:SS timestamp")))?;
    let offset = FixedOffset::east_opt(offset_hours * 3600).ok_or_else(|| (Reason::InvalidDate, format!("UTC offset {offset_hours} h is out of range")))?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| (Reason::InvalidDate, format!("field `{field}` is not a valid local time")))
}

pub(crate) fn parse_rfc3339(value: &str, field: &str) -> Result<DateTime<Utc>, FieldError> {
    if let Some(utc) = value.strip_suffix('Z').and_then(|t| fixed_datetime(t.as_bytes(), b'T')) {
        return Ok(utc.and_utc());
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| (Reason::InvalidDate, format!("field `{field}` is not an RFC 3339 timestamp")))
}

/// How far after now an export's timestamp may be (clocks differ, time
/// zones are misread) before it is implausible.
const MOST_AHEAD: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// `at`, unless it is more than a day after now: a change dated in the
/// future would beat every real-time change and every later export of its
/// key ("newer wins") until that date.
pub(crate) fn not_in_future(at: DateTime<Utc>, field: &str) -> Result<DateTime<Utc>, FieldError> {
    if at > Utc::now() + MOST_AHEAD {
        return Err((Reason::ImplausibleTime, format!("field `{field}` is more than a day in the future")));
    }
    Ok(at)
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
/// A source id's limit: with its company prefix it stays within the schema's [`crate::MAX_ID_BYTES`].
const MAX_SOURCE_ID_BYTES: usize = 128;

/// An id as records and keys use it: letters, digits, `-`, `_` and `.` only.
/// Ids become parts of record keys, where `:` separates the parts (a grant's
/// key is `<employee>:<system>:<role>`, and routing reads the system from
/// it) and whitespace would be invisible in reports.
pub(crate) fn check_id<'a>(text: &'a str, field: &str) -> Result<&'a str, FieldError> {
    let valid = !text.is_empty() && text.len() <= MAX_SOURCE_ID_BYTES && text.chars().all(crate::is_id_char);
    if valid {
        return Ok(text);
    }
    Err((
        Reason::MalformedRow,
        format!("field `{field}` holds characters an id may not: only ASCII letters, digits, '-', '_' and '.', at most {MAX_SOURCE_ID_BYTES} bytes"),
    ))
}

/// A code (a role, a master-data code), as the schema bounds it ([`crate::is_valid_code`]).
pub(crate) fn check_code<'a>(text: &'a str, field: &str) -> Result<&'a str, FieldError> {
    if crate::is_valid_code(text) {
        return Ok(text);
    }
    Err((Reason::MalformedRow, format!("field `{field}` is over {} bytes or holds control characters", crate::MAX_CODE_BYTES)))
}

/// `prefix` and the checked id in `text`; `None` for blank text.
pub(crate) fn prefixed_id(prefix: &str, text: &str, field: &str) -> Result<Option<CompactString>, FieldError> {
    match text {
        "" => Ok(None),
        text => check_id(text, field).map(|id| Some(concat(&[prefix, id]))),
    }
}

/// The parts joined, in one step (inline when short).
pub(crate) fn concat(parts: &[&str]) -> CompactString {
    parts.iter().copied().collect()
}

pub(crate) fn check_email(value: Option<CompactString>, field: &str) -> Result<Option<CompactString>, FieldError> {
    match value {
        Some(email) if !is_plausible_email(&email) => Err((Reason::InvalidEmail, format!("field `{field}` is not a valid email address"))),
        other => Ok(other),
    }
}

/// A person key from its 64 hex digits, upper or lower case (so both
/// companies' spellings of a key match).
pub(crate) fn check_person_key(value: Option<&str>, field: &str) -> Result<Option<Sensitive<PersonKey>>, FieldError> {
    let Some(text) = value else { return Ok(None) };
    let mut key = [0u8; 32];
    // The decoder would also take a `0x` before the digits, which a key never has.
    match text.len() == 64 && const_hex::decode_to_slice(text, &mut key).is_ok() {
        true => Ok(Some(Sensitive::new(key))),
        false => Err((Reason::MalformedRow, format!("field `{field}` is not a 64-digit hex SHA-256"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::format::StrftimeItems;

    #[test]
    fn an_email_fails_for_each_structural_rule_alone() {
        let at_limits = format!("{}@{}.example", "l".repeat(64), "d".repeat(255 - ".example".len()));
        assert!(is_plausible_email("m1@a.example") && is_plausible_email(&at_limits), "valid, and valid at both length limits");
        let one_rule_broken = [
            ("m1.a.example".to_string(), "no @"),
            ("@a.example".to_string(), "empty local part"),
            (format!("{}@a.example", "l".repeat(65)), "local part over 64 bytes"),
            (format!("m@{}.example", "d".repeat(256 - ".example".len())), "domain over 255 bytes"),
            ("m@a@b.example".to_string(), "a second @"),
            ("m@localhost".to_string(), "no dot in the domain"),
            ("m@.a.example".to_string(), "domain starts with a dot"),
            ("m@a.example.".to_string(), "domain ends with a dot"),
            ("m@a..example".to_string(), "two dots in a row"),
            ("m 1@a.example".to_string(), "whitespace"),
            ("m\u{7}1@a.example".to_string(), "a control character"),
        ];
        for (email, rule) in one_rule_broken {
            assert!(!is_plausible_email(&email), "{rule}: {email:?} was accepted");
        }
    }

    #[test]
    fn a_person_key_is_read_in_either_case_so_both_companies_spellings_match() {
        let lower = "0a".repeat(16) + &"fe".repeat(16);
        let read = |key: &str| check_person_key(Some(key), "person_key").map(|k| k.map(|k| *k.expose()));
        let bytes: PersonKey = std::array::from_fn(|i| if i < 16 { 0x0a } else { 0xfe });
        assert_eq!(read(&lower.to_ascii_uppercase()).unwrap(), Some(bytes));
        assert_eq!(read(&lower).unwrap(), Some(bytes));
        for wrong in
            [&lower[1..], &format!("{}g", &lower[1..]), &format!("{lower}0"), &format!("{lower}00"), &format!("0x{lower}"), &format!("0x{}", &lower[2..]), " "]
        {
            assert!(read(wrong).is_err(), "{wrong:?} was read as a key");
        }
        assert_eq!(check_person_key(None, "person_key").unwrap(), None);
    }

    fn chrono_date(value: &str, format: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(value, format).ok()
    }

    /// A local timestamp at UTC+9 as chrono reads it.
    fn chrono_local(value: &str) -> Option<DateTime<Utc>> {
        let naive = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S").ok()?;
        FixedOffset::east_opt(9 * 3600)?.from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn a_leap_second_is_left_to_chrono() {
        let leap = "2016-12-31 23:59:60";
        assert_eq!(parse_local_timestamp(leap, "t", 9).ok(), chrono_local(leap));
        assert!(chrono_local(leap).is_some());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        // Digits in every slot, out-of-range ones included, and now and then a stray byte.
        #[test]
        fn dates_and_timestamps_read_as_chrono_reads_them(
            digits in proptest::collection::vec(proptest::sample::select(b"0123456789012345678901234567890123456789 +-:T".to_vec()), 14),
            year in 0u32..10_000,
        ) {
            let d = |range: std::ops::Range<usize>| String::from_utf8(digits[range].to_vec()).unwrap();
            let year = format!("{year:04}");
            let iso = format!("{year}-{}-{}", d(0..2), d(2..4));
            proptest::prop_assert_eq!(parse_iso_date(&iso, "d").ok(), chrono_date(&iso, "%Y-%m-%d"), "{}", iso);
            let compact = format!("{year}{}{}", d(0..2), d(2..4));
            proptest::prop_assert_eq!(parse_compact_date(&compact, "d").ok(), chrono_date(&compact, "%Y%m%d"), "{}", compact);
            let local = format!("{iso} {}:{}:{}", d(4..6), d(6..8), d(8..10));
            proptest::prop_assert_eq!(parse_local_timestamp(&local, "t", 9).ok(), chrono_local(&local), "{}", local);
            let rfc = format!("{iso}T{}:{}:{}Z", d(4..6), d(6..8), d(8..10));
            proptest::prop_assert_eq!(parse_rfc3339(&rfc, "t").ok(), DateTime::parse_from_rfc3339(&rfc).ok().map(|t| t.with_timezone(&Utc)), "{}", rfc);
        }
    }

    #[test]
    fn the_spelled_out_items_are_what_the_format_strings_say() {
        for (format, items) in [("%Y%m%d", COMPACT_DATE), ("%Y-%m-%d", ISO_DATE), ("%Y-%m-%d %H:%M:%S", LOCAL_TIMESTAMP)] {
            assert_eq!(StrftimeItems::new(format).collect::<Vec<_>>(), items, "{format}");
        }
        assert_eq!(parse_iso_date("2024-02-29", "d").unwrap(), NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        assert!(parse_iso_date("2023-02-29", "d").is_err() && parse_iso_date("2023-02-01x", "d").is_err());
        assert_eq!(parse_compact_date("20240229", "d").unwrap(), NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        let t = parse_local_timestamp("2024-03-01 09:30:00", "t", 9).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-01T00:30:00+00:00");
        assert!(parse_local_timestamp("2024-03-01 25:30:00", "t", 9).is_err());
    }
}
