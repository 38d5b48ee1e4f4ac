//! Fuzzing of everything that reads outside input: the CSV and JSONL
//! importers, `mapping.toml` and the envelope decoder.
//!
//! cargo-fuzz needs a nightly toolchain, which this project does not require,
//! so the fuzzing is proptest's: structure-aware byte strings (valid rows and
//! lines, their mutations, and raw bytes) fed to the public entry points. No
//! input may panic; each run is bounded (records are capped at 1 MiB, JSON
//! nesting at serde_json's recursion limit). CI runs the default case count;
//! `PROPTEST_CASES=100000 cargo test -p hr-core --test fuzz` runs a long one.

mod common;
use common::*;
use hr_core::{load_input_dir, merge, ChangeEnvelope, DataType, Mapping};
use proptest::prelude::*;

/// Pieces that reach the parsers' interesting states.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(vec![0u8]),
        Just(vec![0xff, 0xfe]),
        Just(vec![0xef, 0xbb, 0xbf]),
        Just("김민준".as_bytes().to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".repeat(200)),
        Just(b"null".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
        Just(b"2026-02-30".to_vec()),
        Just(b"20261301".to_vec()),
        Just(A_HEADER.as_bytes().to_vec()),
        Just(a_row("7", "D1", "1", KEY1, "2026-01-01 09:00:00").into_bytes()),
        Just(b_line(7, 10, Some(1), Some(KEY1), true, "2026-01-01T00:00:00Z").into_bytes()),
        Just(unit_line(11, Some(10), None).into_bytes()),
        "[ -~]{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn fuzz_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..30).prop_map(|parts| parts.concat())
}

/// A valid text with a few bytes overwritten, inserted or cut.
fn mutated(valid: String) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    prop::collection::vec((0..len, any::<u8>(), 0u8..3), 1..6).prop_map(move |edits| {
        let mut bytes = valid.clone().into_bytes();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len());
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at.max(1)),
            }
        }
        bytes
    })
}

/// Writes a valid input directory with `file` replaced by `content`, loads
/// and merges it: any outcome but a panic is fine, and a loaded input merges.
fn import_survives(file: &str, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    Input::default().write(dir.path());
    std::fs::write(dir.path().join(file), content).unwrap();
    if let Ok(source) = load_input_dir(dir.path(), &Mapping::default()) {
        let outcome = merge(source);
        for t in DataType::ALL {
            for (_, record) in outcome.state.records(t) {
                record.unwrap();
            }
        }
        for q in &outcome.report.quarantined {
            assert!(!q.file.is_empty(), "a quarantined record names its file");
            // The planted keys are runs of one digit: a detail quoting even a mutated or cut
            // person key holds a long run of it, where an intact-key check would miss it.
            for run in ["1".repeat(12), "2".repeat(12)] {
                assert!(!q.detail.contains(&run), "a quarantine detail quotes (part of) a person key: {}", q.detail);
            }
        }
    }
}

/// `PROPTEST_CASES` for a long run; 128 per target in CI.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)
}

const FILES: [&str; 6] =
    ["company_a/employees.csv", "company_a/departments.csv", "company_b/employees.jsonl", "company_b/org_units.jsonl", "master_data.csv", "permissions.jsonl"];

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(cases()) })]

    #[test]
    fn importers_never_panic_on_arbitrary_bytes(file in prop::sample::select(FILES.to_vec()), content in fuzz_bytes()) {
        import_survives(file, &content);
    }

    #[test]
    fn company_a_csv_never_panics_when_mutated(content in mutated(format!("{A_HEADER}\n{}\n{}\n", a_row("1", "D1", "", KEY1, "2026-01-01 09:00:00"), a_row("2", "D1", "1", KEY2, "2026-01-02 09:00:00")))) {
        import_survives("company_a/employees.csv", &content);
    }

    #[test]
    fn company_b_jsonl_never_panics_when_mutated(content in mutated(format!("{}\n{}\n", b_line(1, 10, None, Some(KEY1), true, "2026-01-01T00:00:00Z"), b_line(2, 10, Some(1), None, false, "2026-01-01T00:00:00Z")))) {
        import_survives("company_b/employees.jsonl", &content);
    }

    #[test]
    fn mapping_parsing_never_panics(text in prop_oneof![
        "[ -~\n]{0,200}",
        mutated(include_str!("../mapping.default.toml").to_string()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        let _ = Mapping::from_toml_str(&text, "mapping.toml");
    }

    #[test]
    fn the_envelope_decoder_never_panics(bytes in prop_oneof![fuzz_bytes(), mutated(valid_envelope())]) {
        let _ = ChangeEnvelope::from_json(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(batch) = serde_json::from_str::<Vec<ChangeEnvelope>>(&format!("[{text}]")) {
                for c in &batch {
                    let _ = c.validate();
                }
            }
        }
    }
}

fn valid_envelope() -> String {
    let md = hr_core::MasterData { set: "md.category".into(), code: "C1".into(), name: "식품".into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, md.key(), 3, "sales", &md).unwrap().to_json()
}
