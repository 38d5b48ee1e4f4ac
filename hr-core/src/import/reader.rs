//! The one reader every input file goes through: records stream out of a
//! file with bounded memory, a [`Format`] turns each into a row, and a
//! per-file parser turns each row into a source record or a quarantine entry.

use super::encoding::TextEncoding;
use super::records::{RawRecord, RecordReader, DEFAULT_MAX_RECORD_BYTES};
use super::ImportError;
use crate::import::fields::FieldError;
use crate::quarantine::{Origin, Quarantined, Reason};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Take};
use std::path::Path;

/// How a file's records become rows a parser reads fields from.
pub(crate) trait Format: 'static {
    /// One well-formed record, addressed by field name.
    type Row<'a>;

    /// Hands every well-formed row of `file` to `each`; a record that is not
    /// even a row (a CSV row with the wrong field count, a JSON line that is
    /// not an object) goes to `quarantined` instead. Returns the lines read.
    fn for_each_row(
        &self,
        dir: &Path,
        file: &'static str,
        quarantined: &mut Vec<Quarantined>,
        each: &mut dyn FnMut(Origin, &Self::Row<'_>),
    ) -> Result<u64, ImportError>;
}

/// The bytes of a file to read: all of it, or a run of whole lines (a
/// format whose records are single lines can read a large file in parts,
/// one per core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilePart {
    pub(super) start: u64,
    pub(super) end: u64,
}

impl FilePart {
    /// The whole file.
    pub(crate) const WHOLE: FilePart = FilePart { start: 0, end: u64::MAX };

    /// `file` cut into parts of about `bytes` each, every cut just after a
    /// newline; one part if the file is smaller.
    pub(crate) fn lines_of(dir: &Path, file: &'static str, bytes: u64) -> Result<Vec<FilePart>, ImportError> {
        let io = |source| ImportError::Io { file: file.to_string(), source };
        let mut handle = BufReader::new(open_file(dir, file)?);
        let len = handle.get_ref().metadata().map_err(io)?.len();
        let parts = len.div_ceil(bytes.max(1)).max(1);
        let mut cuts = vec![0];
        for part in 1..parts {
            let nominal = part * len / parts;
            if nominal <= *cuts.last().unwrap_or(&0) {
                continue;
            }
            handle.seek(SeekFrom::Start(nominal)).map_err(io)?;
            let cut = nominal + handle.skip_until(b'\n').map_err(io)? as u64;
            if cut < len {
                cuts.push(cut);
            }
        }
        let ends = cuts.iter().skip(1).copied().chain([u64::MAX]);
        Ok(cuts.iter().zip(ends).map(|(&start, end)| FilePart { start, end }).collect())
    }

    /// Whether this part starts at the beginning of the file.
    pub(crate) fn is_first(&self) -> bool {
        self.start == 0
    }
}

/// One file's (or file part's) records and the entries quarantined while
/// reading it, and how many lines it spans.
pub(crate) struct Parsed<T> {
    pub(crate) records: Vec<T>,
    pub(crate) quarantined: Vec<Quarantined>,
    pub(crate) lines: u64,
}

impl<T> Parsed<T> {
    /// Moves the records into `records` and the quarantine entries into
    /// `quarantined`; returns the lines read.
    pub(crate) fn into(self, records: &mut Vec<T>, quarantined: &mut Vec<Quarantined>) -> u64 {
        records.extend(self.records);
        quarantined.extend(self.quarantined);
        self.lines
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
    let lines = format.for_each_row(dir, file, &mut quarantined, &mut |origin, row| match parse(origin, row) {
        Ok(record) => records.push(record),
        Err((reason, detail)) => rejected.push(origin.quarantine(id_of(row), reason, detail)),
    })?;
    quarantined.extend(rejected);
    Ok(Parsed { records, quarantined, lines })
}

fn open_file(dir: &Path, file: &'static str) -> Result<File, ImportError> {
    let path = dir.join(file);
    File::open(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ImportError::Missing { file: file.to_string(), path: path.clone() }
        } else {
            ImportError::Io { file: file.to_string(), source }
        }
    })
}

fn open(dir: &Path, file: &'static str, part: FilePart) -> Result<RecordReader<BufReader<Take<File>>>, ImportError> {
    let mut handle = open_file(dir, file)?;
    handle.seek(SeekFrom::Start(part.start)).map_err(|source| ImportError::Io { file: file.to_string(), source })?;
    let quote_aware = file.ends_with(".csv");
    Ok(RecordReader::new(BufReader::with_capacity(1 << 16, handle.take(part.end - part.start)), DEFAULT_MAX_RECORD_BYTES, quote_aware))
}

/// Iterates the records of a file part as text of the file's encoding,
/// quarantining over-long ones and ones that do not decode; returns the
/// lines read. Line numbers count from the
/// part's first line.
pub(crate) fn for_each_record(
    dir: &Path,
    file: &'static str,
    part: FilePart,
    quarantined: &mut Vec<Quarantined>,
    mut each: impl FnMut(u64, &str) -> Result<(), ImportError>,
) -> Result<u64, ImportError> {
    let encoding = TextEncoding::of_file(dir, file)?;
    let mut reader = open(dir, file, part)?;
    let mut first = part.is_first();
    loop {
        let next = reader.next_record().map_err(|source| ImportError::Io { file: file.to_string(), source })?;
        let Some((line, record)) = next else { return Ok(reader.lines_read()) };
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
                match encoding.decode(bytes) {
                    Some(text) => each(line, &text)?,
                    // Without its header a CSV file cannot be read at all.
                    None if first && file.ends_with(".csv") => {
                        return Err(ImportError::InvalidEncoding { file: file.to_string(), line, encoding: encoding.name() })
                    }
                    None => quarantined.push(Origin { file, line }.quarantine(
                        None,
                        Reason::InvalidEncoding,
                        format!("a byte sequence that is not {} text; was the file exported in another encoding?", encoding.name()),
                    )),
                }
            }
        }
        first = false;
    }
}
