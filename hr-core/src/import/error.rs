//! The input directory's errors.

use std::path::PathBuf;

/// An input that cannot be imported at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A required file is absent.
    #[error("{file}: required input file is missing (expected at {path})")]
    Missing {
        /// File relative to the input directory.
        file: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file's header line is not text of the file's encoding (a bad
    /// record after it is quarantined as `invalid_encoding` instead).
    #[error("{file}, line {line}: the header is not valid {encoding}; declare the file's encoding in manifest.json (\"encoding\": {{\"{file}\": \"cp949\"}}) or re-export it as UTF-8")]
    InvalidEncoding {
        /// The file.
        file: String,
        /// The line.
        line: u64,
        /// The encoding it was read as.
        encoding: &'static str,
    },
    /// A workbook standing for a CSV file cannot be read.
    #[error("{file}: cannot read the workbook: {detail}")]
    Workbook {
        /// The workbook (and sheet).
        file: String,
        /// Why.
        detail: String,
    },
    /// A CSV file's encoding could not be told for certain from its content.
    #[error("{file}: its encoding is neither UTF-8 nor certainly CP949 (it looks like {looks_like}); declare it in manifest.json, \"encoding\": {{\"{file}\": \"cp949\"}} (or \"utf-8\"), or re-export it as UTF-8")]
    UnknownEncoding {
        /// The file.
        file: String,
        /// What the detector guessed.
        looks_like: &'static str,
    },
    /// A CSV file has no header row.
    #[error("{file}: empty file, expected a header row: {expected}")]
    Empty {
        /// The file.
        file: String,
        /// The expected header.
        expected: String,
    },
    /// A CSV header lacks required columns.
    #[error("{file}, line 1: wrong header: missing column(s) {missing}; expected {expected}")]
    WrongHeader {
        /// The file.
        file: String,
        /// Missing columns, comma separated.
        missing: String,
        /// The expected header.
        expected: String,
    },
    /// The export manifest cannot be used.
    #[error("{file}: {detail}; expected {{\"exported_at\": \"2026-11-26T09:00:00+09:00\"}}, or remove the file to use the files' modification time")]
    Manifest {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// The mapping file is unusable.
    #[error(transparent)]
    Mapping(#[from] crate::mapping::MappingError),
    /// The input would not fit in memory once merged.
    #[error(
        "the input is {} MiB; merging it needs about {} MiB of memory but only {} MiB is available: \
         split the export (for example by company or by org subtree) or run on a machine with more memory",
        .input_bytes >> 20, .needed_bytes >> 20, .available_bytes >> 20
    )]
    TooLarge {
        /// Size of the input files.
        input_bytes: u64,
        /// Estimated memory the merge needs.
        needed_bytes: u64,
        /// Memory available now.
        available_bytes: u64,
    },
}

impl ImportError {
    /// The error with its line number `lines` further down: for an error in
    /// a part of a file that starts after `lines` lines.
    pub(crate) fn lines_shifted(self, lines: u64) -> Self {
        match self {
            ImportError::InvalidEncoding { file, line, encoding } => ImportError::InvalidEncoding { file, line: line + lines, encoding },
            other => other,
        }
    }
}
