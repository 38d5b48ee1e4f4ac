//! When an export was made: what "newer wins" compares real-time changes
//! with for records that carry no time of their own, and for keys an export
//! no longer lists.

use super::files::{A_DEPARTMENTS, A_EMPLOYEES, B_EMPLOYEES, B_ORG_UNITS, MANIFEST, MASTER_DATA, PERMISSIONS};
use super::ImportError;
use chrono::{DateTime, Utc};
use std::path::Path;

/// The manifest's `exported_at`, or else the oldest modification time of
/// the input files: a file written earlier holds nothing newer than that.
pub(super) fn exported_at(dir: &Path) -> Result<DateTime<Utc>, ImportError> {
    let manifest = dir.join(MANIFEST);
    match std::fs::read(&manifest) {
        Ok(bytes) => from_manifest(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => oldest_modification(dir),
        Err(source) => Err(ImportError::Io { file: MANIFEST.into(), source }),
    }
}

fn from_manifest(bytes: &[u8]) -> Result<DateTime<Utc>, ImportError> {
    let problem = |detail: String| ImportError::Manifest { file: MANIFEST.into(), detail };
    let manifest: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| problem(format!("not valid JSON: {}", crate::describe_json_error(&e))))?;
    let text = manifest.get("exported_at").and_then(|v| v.as_str()).ok_or_else(|| problem("field `exported_at` is missing or not a string".into()))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| problem(format!("field `exported_at` is not an RFC 3339 time with offset ({e})")))
}

fn oldest_modification(dir: &Path) -> Result<DateTime<Utc>, ImportError> {
    let mut oldest: Option<DateTime<Utc>> = None;
    for file in [A_EMPLOYEES, A_DEPARTMENTS, B_EMPLOYEES, B_ORG_UNITS, MASTER_DATA, PERMISSIONS] {
        let modified = match std::fs::metadata(dir.join(file)).and_then(|m| m.modified()) {
            Ok(modified) => DateTime::<Utc>::from(modified),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ImportError::Io { file: file.into(), source }),
        };
        oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
    }
    Ok(oldest.unwrap_or_else(Utc::now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_gives_the_export_time_in_utc() {
        let at = from_manifest(br#"{"exported_at": "2026-11-26T09:00:00+09:00", "source": "hr"}"#).unwrap();
        assert_eq!(at, "2026-11-26T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }

    #[test]
    fn a_bad_manifest_names_the_file_and_field() {
        for (bytes, field) in [(&b"{}"[..], "exported_at"), (b"{\"exported_at\": \"yesterday\"}", "RFC 3339"), (b"not json", "not valid JSON")] {
            let message = from_manifest(bytes).unwrap_err().to_string();
            assert!(message.starts_with("manifest.json: ") && message.contains(field), "{message}");
        }
    }

    #[test]
    fn without_a_manifest_the_oldest_input_file_dates_the_export() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("company_a")).unwrap();
        for (file, age_secs) in [(A_EMPLOYEES, 10), (PERMISSIONS, 3600)] {
            let path = dir.path().join(file);
            std::fs::write(&path, "x").unwrap();
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
            std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        }
        let age = Utc::now() - exported_at(dir.path()).unwrap();
        assert!((3590..3700).contains(&age.num_seconds()), "{age}");
    }
}
