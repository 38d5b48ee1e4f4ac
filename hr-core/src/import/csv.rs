//! CSV files: a header naming the columns, then one row per record (a
//! quoted field may span lines). Where company A's CSV file is absent, a
//! workbook standing for it is read the same way (see [`super::workbook`]).

use super::fields::{missing, FieldError};
use super::reader::{for_each_record, FilePart, Format};
use super::ImportError;
use crate::quarantine::{Origin, Quarantined, Reason};
use compact_str::CompactString;
use std::path::Path;

/// A CSV file whose header must name `required`; a malformed row is
/// quarantined with `id_prefix` and its first field as its id.
pub(crate) struct Csv {
    pub(crate) required: &'static [&'static str],
    pub(crate) id_prefix: Option<&'static str>,
}

impl Format for Csv {
    type Row<'a> = CsvRow<'a>;

    fn for_each_row(
        &self,
        dir: &Path,
        file: &'static str,
        quarantined: &mut Vec<Quarantined>,
        each: &mut dyn FnMut(Origin, &CsvRow<'_>),
    ) -> Result<u64, ImportError> {
        if !dir.join(file).exists() {
            if let Some((shown, sheet)) = super::workbook::sheet_for(dir, file)? {
                return self.for_each_sheet_row(shown, &sheet, quarantined, each);
            }
        }
        let expected = self.required.join(",");
        let mut header: Option<Vec<String>> = None;
        let mut malformed = Vec::new();
        let mut parser = CsvFieldParser::new();
        // A quoted field may hold newlines: a CSV file is read whole.
        let lines = for_each_record(dir, file, FilePart::WHOLE, quarantined, |line, text| {
            let origin = Origin { file, line };
            let Some(columns) = &header else {
                header = Some(self.header(&mut parser, file, line, text, &expected)?);
                return Ok(());
            };
            match parser.fields(text) {
                Err(detail) => malformed.push(origin.quarantine(None, Reason::MalformedRow, detail)),
                Ok(fields) if fields.len() != columns.len() => malformed.push(origin.quarantine(
                    self.id_prefix.and_then(|p| fields.get(0).map(str::trim).filter(|s| !s.is_empty()).map(|s| format!("{p}{s}"))),
                    Reason::MalformedRow,
                    format!("row has {} fields, the header has {}", fields.len(), columns.len()),
                )),
                Ok(fields) => each(origin, &CsvRow { columns, fields: RowFields::Text(&fields) }),
            }
            Ok(())
        })?;
        quarantined.extend(malformed);
        if header.is_none() {
            return Err(ImportError::Empty { file: file.into(), expected });
        }
        Ok(lines)
    }
}

impl Csv {
    /// The column names of a header row, which must be line 1 and name every required column.
    fn header(&self, parser: &mut CsvFieldParser, file: &str, line: u64, text: &str, expected: &str) -> Result<Vec<String>, ImportError> {
        let wrong = |missing: String| ImportError::WrongHeader { file: file.into(), missing, expected: expected.into() };
        let fields = parser.fields(text).map_err(|_| wrong(expected.into()))?;
        self.check_header(fields.iter().map(|f| f.trim().to_string()).collect(), file, line, expected)
    }

    /// `names`, if they are on line 1 and name every required column.
    fn check_header(&self, names: Vec<String>, file: &str, line: u64, expected: &str) -> Result<Vec<String>, ImportError> {
        let wrong = |missing: String| ImportError::WrongHeader { file: file.into(), missing, expected: expected.into() };
        let absent: Vec<&str> = self.required.iter().copied().filter(|c| !names.iter().any(|n| n == c)).collect();
        if line != 1 || !absent.is_empty() {
            return Err(wrong(if absent.is_empty() { "(header must be on line 1)".into() } else { absent.join(",") }));
        }
        Ok(names)
    }

    /// [`Format::for_each_row`] over a workbook's sheet: its first row the
    /// header, each later non-empty row a record named by its sheet row.
    fn for_each_sheet_row(
        &self,
        file: &'static str,
        sheet: &calamine::Range<calamine::Data>,
        quarantined: &mut Vec<Quarantined>,
        each: &mut dyn FnMut(Origin, &CsvRow<'_>),
    ) -> Result<u64, ImportError> {
        let expected = self.required.join(",");
        let first_line = sheet.start().map_or(1, |(row, _)| u64::from(row) + 1);
        let first_column = sheet.start().map_or(0, |(_, column)| column);
        let mut rows = sheet.rows();
        let Some(names) = rows.next() else { return Err(ImportError::Empty { file: file.into(), expected }) };
        // Cells left of the sheet's first used column are empty columns of the CSV it stands for.
        let blank = vec![String::new(); first_column as usize];
        let names: Vec<String> =
            blank.iter().cloned().chain(names.iter().map(|c| super::workbook::cell_text(c, "").unwrap_or_default().trim().to_string())).collect();
        let columns = self.check_header(names, file, first_line, &expected)?;
        let mut lines = first_line;
        for (i, row) in rows.enumerate() {
            let origin = Origin { file, line: first_line + 1 + i as u64 };
            lines = origin.line;
            if row.iter().all(|c| matches!(c, calamine::Data::Empty)) {
                continue;
            }
            let cells: Result<Vec<String>, String> = blank
                .iter()
                .cloned()
                .map(Ok)
                .chain(row.iter().zip(&columns[first_column as usize..]).map(|(cell, column)| super::workbook::cell_text(cell, column)))
                .collect();
            match cells {
                Ok(cells) => each(origin, &CsvRow { columns: &columns, fields: RowFields::Cells(&cells) }),
                Err(detail) => quarantined.push(origin.quarantine(None, Reason::MalformedRow, detail)),
            }
        }
        Ok(lines)
    }
}

/// Splits one CSV record into fields, reusing one parser and one buffer
/// per file (building a CSV parser, or a `String` per field, per row cost
/// more than everything else in the import).
struct CsvFieldParser {
    reader: csv_core::Reader,
    output: Vec<u8>,
    /// The current record's fields, unquoted, one after another.
    record: Vec<u8>,
    /// Where each field ends in `record`.
    ends: Vec<usize>,
}

impl CsvFieldParser {
    fn new() -> Self {
        CsvFieldParser { reader: csv_core::Reader::new(), output: Vec::new(), record: Vec::new(), ends: Vec::new() }
    }

    fn fields<'s>(&'s mut self, text: &'s str) -> Result<Fields<'s>, String> {
        // Without a quote, a carriage return or a line feed (either of which
        // csv_core takes for the end of the record), a record's fields are
        // the text between its commas, which memchr finds many bytes at a
        // time. csv_core also skips a byte-order mark before a record, and
        // finds no field in nothing.
        let plain = !text.is_empty() && !text.starts_with('\u{feff}') && memchr::memchr3(b'"', b'\r', b'\n', text.as_bytes()).is_none();
        if plain {
            self.ends.clear();
            self.ends.extend(memchr::memchr_iter(b',', text.as_bytes()));
            self.ends.push(text.len());
            return Ok(Fields { text, ends: &self.ends, separated: true });
        }
        self.fields_by_csv_core(text)
    }

    fn fields_by_csv_core(&mut self, text: &str) -> Result<Fields<'_>, String> {
        use csv_core::ReadFieldResult;
        self.reader.reset();
        self.record.clear();
        self.ends.clear();
        // A field is never longer than its record, so one call writes a whole field.
        self.output.resize(text.len().max(1), 0);
        let mut input = text.as_bytes();
        loop {
            // Once `input` is empty, passing it again tells the parser the record ended.
            let (result, read, written) = self.reader.read_field(input, &mut self.output);
            input = &input[read..];
            self.record.extend_from_slice(&self.output[..written]);
            match result {
                ReadFieldResult::InputEmpty | ReadFieldResult::OutputFull => {}
                ReadFieldResult::Field { record_end } => {
                    self.ends.push(self.record.len());
                    if record_end {
                        break;
                    }
                }
                // Only before any field (the record's last field ends the loop):
                // a row of nothing but a byte-order mark, which csv_core skips.
                ReadFieldResult::End => return Err("empty record".into()),
            }
        }
        let text = std::str::from_utf8(&self.record).map_err(|_| "not valid UTF-8".to_string())?;
        // Every field starts and ends at a quote, a comma or the record's edge: on a character boundary.
        Ok(Fields { text, ends: &self.ends, separated: false })
    }
}

/// One record's fields, borrowed from the parser or the record.
struct Fields<'a> {
    text: &'a str,
    /// Where each field ends in `text`.
    ends: &'a [usize],
    /// Whether a comma follows each field but the last in `text`, or the fields follow one another.
    separated: bool,
}

impl<'a> Fields<'a> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, index: usize) -> Option<&'a str> {
        let end = *self.ends.get(index)?;
        let start = if index == 0 { 0 } else { self.ends[index - 1] + usize::from(self.separated) };
        self.text.get(start..end)
    }

    fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// One CSV row addressed by column name.
pub(crate) struct CsvRow<'a> {
    columns: &'a [String],
    fields: RowFields<'a>,
}

/// A row's fields: a CSV record's, or a sheet row's cells as text.
enum RowFields<'a> {
    Text(&'a Fields<'a>),
    Cells(&'a [String]),
}

impl CsvRow<'_> {
    /// The header's column names.
    pub(crate) fn columns(&self) -> &[String] {
        self.columns
    }

    pub(crate) fn get(&self, column: &str) -> &str {
        let field = |i: usize| match &self.fields {
            RowFields::Text(fields) => fields.get(i),
            RowFields::Cells(cells) => cells.get(i).map(String::as_str),
        };
        self.columns.iter().position(|c| c == column).and_then(field).map(str::trim).unwrap_or("")
    }
    pub(crate) fn optional(&self, column: &str) -> Option<CompactString> {
        Some(self.get(column)).filter(|s| !s.is_empty()).map(CompactString::from)
    }
    pub(crate) fn required(&self, column: &str) -> Result<&str, FieldError> {
        Some(self.get(column)).filter(|s| !s.is_empty()).ok_or_else(|| missing(column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A sheet row with a spreadsheet error in a cell is quarantined by its
    /// row; the header names the columns; an empty row is skipped.
    #[test]
    fn a_sheet_row_with_an_error_cell_is_quarantined_by_its_row() {
        use calamine::{CellErrorType, Data, Range};
        let mut sheet = Range::new((0, 0), (3, 1));
        sheet.set_value((0, 0), Data::String("code".into()));
        sheet.set_value((0, 1), Data::String("amount".into()));
        sheet.set_value((1, 0), Data::Float(1001.0));
        sheet.set_value((1, 1), Data::Error(CellErrorType::Div0));
        sheet.set_value((3, 0), Data::Float(1002.0));
        sheet.set_value((3, 1), Data::Int(7));
        let format = Csv { required: &["code", "amount"], id_prefix: None };
        let (mut quarantined, mut rows) = (vec![], vec![]);
        format
            .for_each_sheet_row("book.xlsx, sheet s", &sheet, &mut quarantined, &mut |origin, row| {
                rows.push((origin.line, row.get("code").to_string(), row.get("amount").to_string()))
            })
            .unwrap();
        assert_eq!(rows, [(4, "1002".to_string(), "7".to_string())]);
        assert_eq!(quarantined.len(), 1, "{quarantined:?}");
        assert_eq!((quarantined[0].file.as_str(), quarantined[0].line, quarantined[0].reason), ("book.xlsx, sheet s", 2, Reason::MalformedRow));
        assert!(quarantined[0].detail.contains("`amount`"), "{}", quarantined[0].detail);
    }

    fn split(parser: &mut CsvFieldParser, text: &str, by_csv_core: bool) -> Result<Vec<String>, String> {
        let fields = if by_csv_core { parser.fields_by_csv_core(text)? } else { parser.fields(text)? };
        Ok((0..fields.len()).map(|i| fields.get(i).map(str::to_string).unwrap_or_default()).collect())
    }

    proptest! {
        /// Records with and without quotes, carriage returns, line feeds,
        /// byte-order marks, blanks and multi-byte characters: the fields
        /// are what csv_core reads.
        #[test]
        fn fields_are_those_csv_core_reads(text in "\u{feff}?[a, \"\r\n\t한\u{feff}-]{0,24}") {
            let mut parser = CsvFieldParser::new();
            let expected = split(&mut parser, &text, true);
            prop_assert_eq!(split(&mut parser, &text, false), expected);
        }
    }

    #[test]
    fn a_record_without_quotes_is_split_at_its_commas() {
        let mut parser = CsvFieldParser::new();
        assert_eq!(split(&mut parser, "1001,김민준,, A-7 ,", false).unwrap(), ["1001", "김민준", "", " A-7 ", ""]);
        assert_eq!(split(&mut parser, "one", false).unwrap(), ["one"]);
    }
}
