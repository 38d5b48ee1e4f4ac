//! Which encoding a CSV file is in, and decoding its records.
//!
//! Korean HR systems and Excel on Korean Windows export CSV in CP949 far
//! more often than in UTF-8. A CSV file may be UTF-8 (with or without a
//! byte-order mark) or CP949 (EUC-KR is its subset): as `manifest.json`
//! declares (`"encoding": {"company_a/employees.csv": "cp949"}`), or else
//! as detected from its first 64 KiB. A detection that is not certain is an
//! error asking for the declaration. JSON lines are UTF-8 by their standard.
//! A record that does not decode is quarantined (`invalid_encoding`), never
//! the file.

use super::files::MANIFEST;
use super::ImportError;
use encoding_rs::{Encoding, EUC_KR, UTF_8};
use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// A file's text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextEncoding(&'static Encoding);

impl TextEncoding {
    pub(crate) const UTF8: TextEncoding = TextEncoding(UTF_8);

    /// The record as text; `None` if a byte sequence in it is not of this encoding.
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        if self.0 == UTF_8 {
            return std::str::from_utf8(bytes).ok().map(Cow::Borrowed);
        }
        self.0.decode_without_bom_handling_and_without_replacement(bytes)
    }

    /// Its name as a person writes it in the manifest.
    pub(crate) fn name(&self) -> &'static str {
        if self.0 == UTF_8 {
            "UTF-8"
        } else {
            "CP949"
        }
    }

    /// The encoding of `file` in the input directory `dir`.
    pub(crate) fn of_file(dir: &Path, file: &'static str) -> Result<Self, ImportError> {
        if !file.ends_with(".csv") {
            return Ok(Self::UTF8);
        }
        if let Some(declared) = declared(dir, file)? {
            return Ok(declared);
        }
        detect(dir, file)
    }
}

/// The labels `manifest.json` may give a file: UTF-8, or CP949 by any of
/// its names (encoding_rs knows CP949 as `EUC-KR`, not as `cp949`, `ms949`
/// or `uhc`).
fn from_label(label: &str) -> Option<TextEncoding> {
    match label.trim().to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => Some(TextEncoding::UTF8),
        "cp949" | "ms949" | "uhc" | "windows-949" | "euc-kr" | "euckr" => Some(TextEncoding(EUC_KR)),
        _ => None,
    }
}

fn declared(dir: &Path, file: &'static str) -> Result<Option<TextEncoding>, ImportError> {
    let bytes = match std::fs::read(dir.join(MANIFEST)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ImportError::Io { file: MANIFEST.into(), source }),
    };
    let problem = |detail: String| ImportError::Manifest { file: MANIFEST.into(), detail };
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| problem(format!("not valid JSON: {}", crate::describe_json_error(&e))))?;
    let Some(label) = manifest.get("encoding").and_then(|e| e.get(file)) else { return Ok(None) };
    let label = label.as_str().ok_or_else(|| problem(format!("field `encoding.\"{file}\"` is not a string")))?;
    from_label(label).map(Some).ok_or_else(|| {
        problem(format!("field `encoding.\"{file}\"`: {label:?} is not one this reader knows: \"utf-8\" or \"cp949\" (also \"euc-kr\", \"ms949\", \"uhc\")"))
    })
}

/// How much of a file detection looks at.
const SAMPLE_BYTES: u64 = 64 * 1024;

fn detect(dir: &Path, file: &'static str) -> Result<TextEncoding, ImportError> {
    let mut sample = Vec::new();
    match std::fs::File::open(dir.join(file)) {
        Ok(handle) => handle.take(SAMPLE_BYTES).read_to_end(&mut sample).map_err(|source| ImportError::Io { file: file.into(), source })?,
        // A missing file is reported by the reader, naming what it expected.
        Err(_) => return Ok(TextEncoding::UTF8),
    };
    let whole = (sample.len() as u64) < SAMPLE_BYTES;
    let text = sample.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&sample);
    // UTF-8 (ASCII included), or UTF-8 with a few corrupt rows (quarantined
    // when read): in CP949 text nearly every Hangul pair is invalid UTF-8.
    let (characters, invalid) = utf8_shape(text);
    if invalid == 0 || characters >= MOSTLY_UTF8 * invalid {
        return Ok(TextEncoding::UTF8);
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(text, whole);
    // The exports come from Korean systems: among the legacy encodings, Korean is the likely one.
    let (guess, certain) = detector.guess_assess(Some(b"kr"), false);
    if guess == EUC_KR && certain {
        return Ok(TextEncoding(EUC_KR));
    }
    Err(ImportError::UnknownEncoding { file: file.to_string(), looks_like: guess.name() })
}

/// How many valid non-ASCII UTF-8 characters per invalid sequence make a
/// sample UTF-8 with corrupt rows rather than another encoding.
const MOSTLY_UTF8: usize = 4;

/// The non-ASCII UTF-8 characters in `bytes`, and the invalid sequences (a
/// character cut at the end is neither).
fn utf8_shape(mut bytes: &[u8]) -> (usize, usize) {
    let non_ascii = |valid: &[u8]| valid.iter().filter(|b| (0xC0..0xF8).contains(*b)).count();
    let (mut characters, mut invalid) = (0, 0);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return (characters + non_ascii(bytes), invalid),
            Err(e) => {
                characters += non_ascii(&bytes[..e.valid_up_to()]);
                let Some(len) = e.error_len() else { return (characters, invalid) };
                invalid += 1;
                bytes = &bytes[e.valid_up_to() + len..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(file_bytes: &[u8], manifest: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("company_a")).unwrap();
        std::fs::write(dir.path().join("company_a/employees.csv"), file_bytes).unwrap();
        if let Some(m) = manifest {
            std::fs::write(dir.path().join(MANIFEST), m).unwrap();
        }
        dir
    }

    const FILE: &str = "company_a/employees.csv";

    #[test]
    fn cp949_text_is_detected_and_decoded_exactly_uhc_characters_included() {
        // 똠 and 햏 are only in CP949's UHC extension, not in EUC-KR's KS X 1001.
        let text = "emp_no,name_kr,dept\r\n1001,김민준,영업부\r\n1002,이똠햏,개발부\r\n".repeat(20);
        let (bytes, _, lossy) = EUC_KR.encode(&text);
        assert!(!lossy);
        let dir = input(&bytes, None);
        let encoding = TextEncoding::of_file(dir.path(), FILE).unwrap();
        assert_eq!(encoding.name(), "CP949");
        assert_eq!(encoding.decode(&bytes).unwrap(), text);
        assert!(encoding.decode(b"1003,\xff\xff,x").is_none(), "an undecodable sequence is refused, not replaced");
    }

    #[test]
    fn utf8_with_or_without_a_bom_is_utf8() {
        for bytes in [&b"\xEF\xBB\xBFemp_no,name\n1,\xea\xb9\x80\n"[..], b"emp_no,name\n1,x\n"] {
            assert_eq!(TextEncoding::of_file(input(bytes, None).path(), FILE).unwrap(), TextEncoding::UTF8);
        }
    }

    #[test]
    fn a_declaration_wins_under_any_of_cp949s_names_and_an_unknown_one_is_named() {
        for label in ["cp949", "CP949", "ms949", "uhc", "euc-kr", "utf-8"] {
            let manifest = format!(r#"{{"exported_at": "2026-11-26T09:00:00+09:00", "encoding": {{"{FILE}": "{label}"}}}}"#);
            let want = if label == "utf-8" { "UTF-8" } else { "CP949" };
            assert_eq!(TextEncoding::of_file(input(b"a\n", Some(&manifest)).path(), FILE).unwrap().name(), want, "{label}");
        }
        let manifest = format!(r#"{{"encoding": {{"{FILE}": "latin1"}}}}"#);
        let err = TextEncoding::of_file(input(b"a\n", Some(&manifest)).path(), FILE).unwrap_err().to_string();
        assert!(err.starts_with("manifest.json: ") && err.contains("\"latin1\"") && err.contains("cp949"), "{err}");
    }

    #[test]
    fn a_utf8_file_with_a_corrupt_row_is_still_utf8() {
        let mut bytes = "emp_no,name\n1,김민준\n2,이서연\n3,박도윤\n".as_bytes().to_vec();
        bytes.extend(b"4,\xff\xfe\n");
        assert_eq!(utf8_shape(&bytes), (9, 2));
        assert_eq!(TextEncoding::of_file(input(&bytes, None).path(), FILE).unwrap(), TextEncoding::UTF8);
        let (cp949, _, _) = EUC_KR.encode("emp_no,name\n1,김민준\n2,이서연\n3,박도윤\n");
        let (characters, invalid) = utf8_shape(&cp949);
        assert!(characters * MOSTLY_UTF8 < invalid, "CP949 Hangul is mostly invalid UTF-8: {characters} {invalid}");
    }

    #[test]
    fn a_latin1_file_is_refused_asking_for_the_declaration() {
        let text = "emp_no,name\n1,Jos\u{e9} M\u{fc}ller\n2,Fran\u{e7}ois \u{c9}lise\n".repeat(10);
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
        let err = TextEncoding::of_file(input(&bytes, None).path(), FILE).unwrap_err().to_string();
        assert!(err.contains(FILE) && err.contains("manifest.json") && err.contains("\"encoding\""), "{err}");
    }
}
