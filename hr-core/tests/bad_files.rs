//! Files that cannot be imported at all, and records too big to hold.

mod common;
use common::*;
use hr_core::{load_input_dir, ImportError, Mapping, Reason};

fn load(dir: &std::path::Path) -> Result<hr_core::SourceData, ImportError> {
    load_input_dir(dir, &Mapping::default())
}

fn with_file(path: &str, content: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Input::default().write(dir.path());
    std::fs::write(dir.path().join(path), content).unwrap();
    dir
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    Input::default().write(dir.path());
    std::fs::remove_file(dir.path().join("company_b/org_units.jsonl")).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ImportError::Missing { .. }));
    assert!(err.to_string().contains("company_b/org_units.jsonl"), "{err}");
}

#[test]
fn an_empty_csv_is_an_error_and_header_only_is_no_records() {
    let dir = with_file("company_a/departments.csv", b"");
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ImportError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("company_a/departments.csv"));

    let dir = with_file("company_a/employees.csv", format!("{A_HEADER}\n").as_bytes());
    let data = load(dir.path()).unwrap();
    assert_eq!(data.employee_count(), 1, "only company B's employee");

    let dir = with_file("company_b/employees.jsonl", b"");
    assert_eq!(load(dir.path()).unwrap().employee_count(), 1, "an empty JSONL file has no records");
}

#[test]
fn a_wrong_header_names_the_missing_columns() {
    let dir = with_file("company_a/employees.csv", b"emp_no,name,email\n1,x,y\n");
    let err = load(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImportError::WrongHeader { .. }));
    assert!(text.contains("company_a/employees.csv") && text.contains("dept_code") && text.contains("line 1"), "{text}");
}

#[test]
fn bytes_that_are_not_utf8_quarantine_only_their_row() {
    let rows: Vec<String> = ["1", "3", "4"].iter().map(|id| a_row(id, "D1", "", "", "2026-01-01 09:00:00")).collect();
    let mut content = format!("{A_HEADER}\n{}\n", rows[0]).into_bytes();
    content.extend(b"2,\xff\xfe,x\n");
    content.extend(format!("{}\n{}\n", rows[1], rows[2]).into_bytes());
    let dir = with_file("company_a/employees.csv", &content);
    for manifest in [None, Some(r#"{"exported_at": "2026-11-26T09:00:00Z", "encoding": {"company_a/employees.csv": "utf-8"}}"#)] {
        if let Some(m) = manifest {
            std::fs::write(dir.path().join("manifest.json"), m).unwrap();
        }
        let data = load(dir.path()).unwrap();
        let bad: Vec<_> = data.quarantined().iter().filter(|q| q.reason == hr_core::Reason::InvalidEncoding).collect();
        assert_eq!(bad.len(), 1, "{manifest:?}: {:?}", data.quarantined());
        assert_eq!((bad[0].file.as_str(), bad[0].line), ("company_a/employees.csv", 3));
        assert!(bad[0].detail.contains("UTF-8"), "{}", bad[0].detail);
        assert_eq!(data.employee_count(), 4, "the good rows proceed");
    }
}

#[test]
fn an_undecodable_header_is_an_error_naming_file_and_line() {
    let dir = with_file("company_a/employees.csv", b"emp_no,\xff\xfe\n");
    std::fs::write(dir.path().join("manifest.json"), r#"{"exported_at": "2026-11-26T09:00:00Z", "encoding": {"company_a/employees.csv": "utf-8"}}"#).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(matches!(err, ImportError::InvalidEncoding { line: 1, .. }), "{err}");
    assert!(err.to_string().starts_with("company_a/employees.csv, line 1: the header is not valid UTF-8"), "{err}");
}

#[test]
fn a_truncated_json_line_is_quarantined_and_the_rest_proceed() {
    let content = format!(
        "{}\n{{\"employeeId\": 5, \"firstN\n{}\n",
        b_line(1, 10, None, None, true, "2026-01-01T00:00:00Z"),
        b_line(2, 10, None, None, true, "2026-01-01T00:00:00Z")
    );
    let dir = with_file("company_b/employees.jsonl", content.as_bytes());
    let data = load(dir.path()).unwrap();
    assert_eq!(data.employee_count(), 3);
    assert_eq!(data.quarantined().len(), 1);
    assert_eq!((data.quarantined()[0].line, data.quarantined()[0].reason), (2, Reason::MalformedRow));
}

#[test]
fn a_row_of_nothing_but_a_byte_order_mark_is_quarantined_as_an_empty_record() {
    let mut content = format!("{A_HEADER}\n").into_bytes();
    content.extend(b"\xEF\xBB\xBF\r\n");
    content.extend(format!("{}\n", a_row("1", "D1", "", "", "2026-01-01 09:00:00")).as_bytes());
    let dir = with_file("company_a/employees.csv", &content);
    let data = load(dir.path()).unwrap();
    assert_eq!(data.employee_count(), 2, "the next row and company B's employee proceed");
    let entry = &data.quarantined()[0];
    assert_eq!((entry.line, entry.reason, entry.detail.as_str()), (2, Reason::MalformedRow, "empty record"));
}

#[test]
fn a_mapping_that_does_not_parse_is_an_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    Input::default().write(dir.path());
    std::fs::write(dir.path().join("mapping.toml"), "[grades.company_a]\n\"사원\" = \"staff\"\nbroken =\n").unwrap();
    let err = Mapping::for_input_dir(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("mapping.toml") && text.contains("line 3"), "{text}");
}
