//! Dates and instants serialized as chrono serializes them, without its
//! formatting machinery for the common case.
//!
//! Every record a plan compares is serialized to be hashed, and chrono
//! writes each date through `core::fmt`, which was a quarter of that work.
//! Values chrono writes in the plain `YYYY-MM-DD` and
//! `YYYY-MM-DDTHH:MM:SSZ` forms are written here from their digits; any
//! other (years outside 0-9999, fractions of a second, leap seconds) goes
//! to chrono itself, so the bytes, and so every content hash, are the ones
//! chrono gives (a property test holds that).

use crate::sensitive::Sensitive;
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::{Serialize, Serializer};

/// Serializes a date or an instant (or an optional or sensitive one) to the
/// text chrono gives it; for `#[serde(serialize_with = "…")]`.
pub(crate) fn serialize<T: IsoText, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    value.serialize_iso(serializer)
}

/// A value with an ISO 8601 text.
pub(crate) trait IsoText {
    fn serialize_iso<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;
}

impl IsoText for NaiveDate {
    fn serialize_iso<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 10];
        match write_date(self, &mut text) {
            Some(()) => serializer.serialize_str(ascii(&text)),
            None => self.serialize(serializer),
        }
    }
}

impl IsoText for DateTime<Utc> {
    fn serialize_iso<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let time = self.time();
        let mut text = *b"0000-00-00T00:00:00Z";
        if time.nanosecond() != 0 || write_date(&self.date_naive(), &mut text[..10]).is_none() {
            return self.serialize(serializer);
        }
        write_two_digits(time.hour(), &mut text[11..13]);
        write_two_digits(time.minute(), &mut text[14..16]);
        write_two_digits(time.second(), &mut text[17..19]);
        serializer.serialize_str(ascii(&text))
    }
}

impl<T: IsoText> IsoText for Sensitive<T> {
    fn serialize_iso<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.expose().serialize_iso(serializer)
    }
}

impl<T: IsoText> IsoText for Option<T> {
    fn serialize_iso<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Some(value) => value.serialize_iso(serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// Writes `YYYY-MM-DD` into the first ten bytes of `text`; `None` for a
/// year chrono writes in another form.
fn write_date(date: &NaiveDate, text: &mut [u8]) -> Option<()> {
    let year = u32::try_from(date.year()).ok().filter(|year| *year <= 9999)?;
    write_two_digits(year / 100, &mut text[0..2]);
    write_two_digits(year % 100, &mut text[2..4]);
    text[4] = b'-';
    write_two_digits(date.month(), &mut text[5..7]);
    text[7] = b'-';
    write_two_digits(date.day(), &mut text[8..10]);
    Some(())
}

fn write_two_digits(value: u32, text: &mut [u8]) {
    text[0] = b'0' + (value / 10) as u8;
    text[1] = b'0' + (value % 10) as u8;
}

fn ascii(text: &[u8]) -> &str {
    // Only digits and punctuation were written.
    std::str::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours<T: IsoText>(value: &T) -> String {
        let mut out = Vec::new();
        value.serialize_iso(&mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    proptest! {
        #[test]
        fn a_date_is_written_as_chrono_writes_it(days in -1_000_000i32..4_000_000) {
            let date = NaiveDate::from_num_days_from_ce_opt(days).unwrap();
            prop_assert_eq!(ours(&date), serde_json::to_string(&date).unwrap());
            prop_assert_eq!(ours(&Some(Sensitive::new(date))), serde_json::to_string(&Some(date)).unwrap());
        }

        #[test]
        fn an_instant_is_written_as_chrono_writes_it(seconds in -100_000_000_000i64..300_000_000_000, nanos in prop_oneof![Just(0u32), 0u32..2_000_000_000]) {
            let Some(instant) = DateTime::<Utc>::from_timestamp(seconds, nanos) else { return Ok(()) };
            prop_assert_eq!(ours(&instant), serde_json::to_string(&instant).unwrap());
        }
    }

    #[test]
    fn none_is_null() {
        assert_eq!(ours(&None::<NaiveDate>), "null");
    }

    #[test]
    fn the_plain_forms_are_the_ones_written_here() {
        let instant = DateTime::<Utc>::from_timestamp(1_775_787_639, 0).unwrap();
        assert_eq!(ours(&instant), "\"2026-04-10T02:20:39Z\"");
        assert_eq!(ours(&instant.date_naive()), "\"2026-04-10\"");
        assert_eq!(ours(&NaiveDate::from_ymd_opt(7, 1, 2).unwrap()), "\"0007-01-02\"");
    }
}
