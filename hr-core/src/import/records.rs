//! Splitting a file into records with bounded memory.
//!
//! A CSV record may span lines inside quotes; a JSONL record is one line.
//! Either way no record may exceed a byte limit: a longer one is skipped
//! (its bytes are read but not kept) and reported, so a 100 MB line cannot
//! exhaust memory.

use std::io::{self, BufRead};

/// The default longest record kept in memory: 1 MiB.
pub(crate) const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// One record's raw bytes, or the fact that it was too long.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RawRecord<'a> {
    /// The record's bytes without the line terminator (valid until the next record is read).
    Bytes(&'a [u8]),
    /// The record exceeded the limit; this many bytes were skipped.
    TooLong(u64),
}

/// Reads records from a [`BufRead`], tracking the line each starts on.
pub(crate) struct RecordReader<R> {
    inner: R,
    max: usize,
    quote_aware: bool,
    next_line: u64,
    /// The current record, reused from record to record.
    kept: Vec<u8>,
}

impl<R: BufRead> RecordReader<R> {
    /// `quote_aware`: newlines inside double quotes do not end a record (CSV).
    pub(crate) fn new(inner: R, max: usize, quote_aware: bool) -> Self {
        RecordReader { inner, max, quote_aware, next_line: 1, kept: Vec::new() }
    }

    /// The lines read so far (newlines passed).
    pub(crate) fn lines_read(&self) -> u64 {
        self.next_line - 1
    }

    /// The next non-blank record and its first line number, or `None` at end of input.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<(u64, RawRecord<'_>)>> {
        loop {
            let start_line = self.next_line;
            self.kept.clear();
            let mut total: u64 = 0;
            let mut in_quotes = false;
            let mut ended = false;
            loop {
                let buf = self.inner.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let end = end_of_record(buf, self.quote_aware, &mut in_quotes, &mut self.next_line);
                let take = end.unwrap_or(buf.len());
                total += take as u64;
                // Past the limit nothing more is kept: what was kept is at most `max`.
                if total <= self.max as u64 {
                    self.kept.extend_from_slice(&buf[..take]);
                }
                let consumed = end.map(|e| e + 1).unwrap_or(take);
                self.inner.consume(consumed);
                if end.is_some() {
                    ended = true;
                    break;
                }
            }
            if total > self.max as u64 {
                return Ok(Some((start_line, RawRecord::TooLong(total))));
            }
            if self.kept.last() == Some(&b'\r') {
                self.kept.pop();
            }
            // Also the end of input, where nothing was read.
            if self.kept.iter().all(|b| b.is_ascii_whitespace()) {
                if !ended {
                    return Ok(None);
                }
                continue;
            }
            return Ok(Some((start_line, RawRecord::Bytes(&self.kept))));
        }
    }
}

/// Where in `buf` the record ends (its newline), counting in `lines` the
/// lines passed; `in_quotes` carries a CSV quote still open at the end of `buf`.
fn end_of_record(buf: &[u8], quote_aware: bool, in_quotes: &mut bool, lines: &mut u64) -> Option<usize> {
    let mut from = 0;
    loop {
        let found = if quote_aware { memchr::memchr2(b'\n', b'"', &buf[from..]) } else { memchr::memchr(b'\n', &buf[from..]) };
        let at = from + found?;
        if buf[at] == b'"' {
            *in_quotes = !*in_quotes;
        } else {
            *lines += 1;
            if !*in_quotes {
                return Some(at);
            }
        }
        from = at + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record as (first line, bytes), or (first line, skipped length) if too long.
    fn all(input: &[u8], max: usize, quotes: bool) -> Vec<(u64, Result<Vec<u8>, u64>)> {
        let mut r = RecordReader::new(input, max, quotes);
        let mut out = vec![];
        while let Some((line, record)) = r.next_record().unwrap() {
            out.push((
                line,
                match record {
                    RawRecord::Bytes(b) => Ok(b.to_vec()),
                    RawRecord::TooLong(n) => Err(n),
                },
            ));
        }
        out
    }

    #[test]
    fn splits_lines_and_counts_from_one() {
        let got = all(b"a\r\nb\n\nc", 100, false);
        assert_eq!(got, vec![(1, Ok(b"a".to_vec())), (2, Ok(b"b".to_vec())), (4, Ok(b"c".to_vec()))]);
    }

    #[test]
    fn quoted_newlines_stay_in_one_csv_record() {
        let got = all(b"h\n\"x\ny\",1\nz\n", 100, true);
        assert_eq!(got[1], (2, Ok(b"\"x\ny\",1".to_vec())));
        assert_eq!(got[2], (4, Ok(b"z".to_vec())));
    }

    #[test]
    fn long_records_are_skipped_not_kept() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend(b"\nafter\n");
        let got = all(&input, 100, false);
        assert_eq!(got[1], (2, Err(10_000)));
        assert_eq!(got[2], (3, Ok(b"after".to_vec())));
    }

    #[test]
    fn a_record_of_exactly_the_limit_is_kept_and_one_byte_more_is_not() {
        let got = all(b"12345\n123456\n", 5, false);
        assert_eq!(got, vec![(1, Ok(b"12345".to_vec())), (2, Err(6))]);
    }
}
