//! The one reader every input file goes through: records stream out of a
//! file with bounded memory, a [`Format`] turns each into a row, and a
//! per-file parser turns each row into a source record or a quarantine entry.

use super::records::{RawRecord, RecordReader, DEFAULT_MAX_RECORD_BYTES};
use super::ImportError;
use crate::import::fields::FieldError;
use crate::quarantine::{Origin, Quarantined, Reason};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// How a file's records become rows a parser reads fields from.
pub(crate) trait Format: 'static {
    /// One well-formed record, addressed by field name.
    type Row<'a>;

    /// Hands every well-formed row of `file` to `each`; a record that is not
    /// even a row (a CSV row with the wrong field count, a JSON line that is
    /// not an object) goes to `quarantined` instead.
    fn for_each_row(
        &self,
        dir: &Path,
        file: &'static str,
        quarantined: &mut Vec<Quarantined>,
        each: &mut dyn FnMut(Origin, &Self::Row<'_>),
    ) -> Result<(), ImportError>;
}

/// One file's records and the entries quarantined while reading it.
pub(crate) struct Parsed<T> {
    pub(crate) records: Vec<T>,
    pub(crate) quarantined: Vec<Quarantined>,
}

impl<T> Parsed<T> {
    /// Moves the records into `records` and the quarantine entries into `quarantined`.
    pub(crate) fn into(self, records: &mut Vec<T>, quarantined: &mut Vec<Quarantined>) {
        records.extend(self.records);
        quarantined.extend(self.quarantined);
    }
}

/// Reads one file: each row `parse` accepts is a record; each it rejects is
/// quarantined with the id `id_of` can still read from the row.
pub(crate) fn read_file<F: Format, T>(
    dir: &Path,
    file: &'static str,
    format: &F,
    id_of: impl Fn(&F::Row<'_>) -> Option<String>,
    parse: impl Fn(Origin, &F::Row<'_>) -> Result<T, FieldError>,
) -> Result<Parsed<T>, ImportError> {
    let mut quarantined = Vec::new();
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    format.for_each_row(dir, file, &mut quarantined, &mut |origin, row| match parse(origin, row) {
        Ok(record) => records.push(record),
        Err((reason, detail)) => rejected.push(origin.quarantine(id_of(row), reason, detail)),
    })?;
    quarantined.extend(rejected);
    Ok(Parsed { records, quarantined })
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
pub(crate) fn for_each_record(
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
                if first {
                    bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                }
                let text = std::str::from_utf8(bytes).map_err(|_| ImportError::InvalidUtf8 { file: file.to_string(), line })?;
                each(line, text)?;
            }
        }
        first = false;
    }
}
