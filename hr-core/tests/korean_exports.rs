//! Exports as Korean HR departments make them: company A's CSV files in
//! CP949 with CRLF line ends and no byte-order mark, Hangul names including
//! characters only CP949's UHC extension has (똠, 햏), converted from the
//! UTF-8 fixture by glibc's `iconv -f UTF-8 -t CP949`, and as Excel workbooks (see
//! `tests/fixtures/korean/`). Both merge to exactly the same state.

use hr_core::{load_input_dir, merge, ImportError, Mapping, Reason};
use std::path::{Path, PathBuf};

fn fixture(which: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/korean").join(which)
}

/// A copy of a fixture to change.
fn copy_of(which: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "company_a", "company_b"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(fixture(which).join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    dir
}

#[test]
fn a_cp949_export_merges_to_exactly_the_state_of_the_utf8_one() {
    let utf8 = merge(load_input_dir(&fixture("utf8"), &Mapping::default()).unwrap());
    let cp949 = merge(load_input_dir(&fixture("cp949"), &Mapping::default()).unwrap());
    assert!(utf8.state.employees.len() > 30);
    assert_eq!(cp949.state, utf8.state);
    assert_eq!(cp949.report.quarantined, utf8.report.quarantined);
    assert_eq!(utf8.state.employees["A-100000"].name, "이똠햏", "UHC characters read exactly");
    assert!(utf8.state.org_units.values().any(|u| u.name == "영업 똠방각하"));
}

#[test]
fn a_declared_encoding_is_read_as_declared() {
    let dir = copy_of("cp949");
    std::fs::write(
        dir.path().join("manifest.json"),
        r#"{"exported_at": "2026-11-26T09:00:00+09:00", "encoding": {"company_a/employees.csv": "ms949", "company_a/departments.csv": "cp949"}}"#,
    )
    .unwrap();
    let declared = merge(load_input_dir(dir.path(), &Mapping::default()).unwrap());
    let utf8 = merge(load_input_dir(&fixture("utf8"), &Mapping::default()).unwrap());
    assert_eq!(declared.state, utf8.state);
}

#[test]
fn a_row_that_does_not_decode_is_quarantined_with_its_line_and_the_rest_proceed() {
    // Declared CP949: the row is quarantined, never the file.
    let dir = copy_of("cp949");
    let file = dir.path().join("company_a/employees.csv");
    let mut bytes = std::fs::read(&file).unwrap();
    let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    // 0xFF is no CP949 lead byte.
    bytes.extend(b"199999,\xff\xfe\xff,Bad Bytes,bad@a.example,1001,\xb4\xeb\xb8\xae,20200101,\xc0\xe7\xc1\xf7,,,,,,2026-05-12 19:41:38\r\n");
    std::fs::write(&file, bytes).unwrap();
    // Undeclared, a file with bytes no CP949 text has cannot be told for certain: the reader asks.
    let err = load_input_dir(dir.path(), &Mapping::default()).unwrap_err().to_string();
    assert!(err.starts_with("company_a/employees.csv: ") && err.contains("\"encoding\""), "{err}");
    std::fs::write(dir.path().join("manifest.json"), r#"{"exported_at": "2026-11-26T09:00:00+09:00", "encoding": {"company_a/employees.csv": "cp949"}}"#)
        .unwrap();
    let source = load_input_dir(dir.path(), &Mapping::default()).unwrap();
    let bad: Vec<_> = source.quarantined().iter().filter(|q| q.reason == Reason::InvalidEncoding).collect();
    assert_eq!(bad.len(), 1, "{:?}", source.quarantined());
    assert_eq!((bad[0].file.as_str(), bad[0].line), ("company_a/employees.csv", lines + 1));
    assert!(bad[0].detail.contains("CP949"), "{}", bad[0].detail);
    let utf8 = merge(load_input_dir(&fixture("utf8"), &Mapping::default()).unwrap());
    assert_eq!(merge(source).state.employees, utf8.state.employees, "every other row as before");
}

#[test]
fn a_latin1_export_is_refused_naming_the_file_and_asking_for_its_encoding() {
    let dir = copy_of("utf8");
    let text = "dept_code,dept_name,parent_dept_code,leader_emp_no,updated_at\n1000,Ventes \u{e9}t\u{e9} Fran\u{e7}aise,,,2026-05-03 06:19:08\n";
    let latin1: Vec<u8> = text.chars().map(|c| c as u32 as u8).collect();
    std::fs::write(dir.path().join("company_a/departments.csv"), latin1).unwrap();
    let err = load_input_dir(dir.path(), &Mapping::default()).unwrap_err();
    assert!(matches!(err, ImportError::UnknownEncoding { .. }), "{err}");
    let message = err.to_string();
    assert!(message.starts_with("company_a/departments.csv: ") && message.contains("manifest.json") && message.contains("\"encoding\""), "{message}");
}

/// Company A's files as workbooks LibreOffice Calc wrote from the CSV
/// (ids, compact dates and salaries as numbers, `updated_at` as date cells),
/// and as one workbook with a sheet each (`company_a.xlsx`): the same state
/// as the UTF-8 CSV.
#[test]
fn an_excel_export_merges_to_exactly_the_state_of_the_csv_one() {
    let utf8 = merge(load_input_dir(&fixture("utf8"), &Mapping::default()).unwrap());
    for layout in ["xlsx", "workbook"] {
        let xlsx = merge(load_input_dir(&fixture(layout), &Mapping::default()).unwrap());
        assert_eq!(xlsx.state, utf8.state, "{layout}");
        assert_eq!(xlsx.report.quarantined, utf8.report.quarantined, "{layout}");
    }
}

/// A bad row in a workbook is quarantined naming the workbook and its row.
#[test]
fn a_bad_row_in_a_workbook_is_named_by_its_sheet_row() {
    let dir = copy_of("xlsx");
    // The employees sheet with the department sheet's content: every row lacks employee columns.
    std::fs::copy(dir.path().join("company_a/departments.xlsx"), dir.path().join("company_a/employees.xlsx")).unwrap();
    let err = load_input_dir(dir.path(), &Mapping::default()).unwrap_err().to_string();
    assert!(err.starts_with("company_a/employees.xlsx") && err.contains("emp_no"), "{err}");

    // A cell that is not what its column holds (a hire date typed as 2020-13-45 on sheet row 5):
    // that row is quarantined, named by workbook, sheet and row; the rest proceed.
    let source = load_input_dir(&fixture("bad-row"), &Mapping::default()).unwrap();
    let bad: Vec<_> = source.quarantined().iter().collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!((bad[0].file.as_str(), bad[0].line, bad[0].reason), ("company_a.xlsx, sheet employees", 5, Reason::InvalidDate));
    assert!(bad[0].detail.contains("hire_date"), "{}", bad[0].detail);
    let all = merge(load_input_dir(&fixture("utf8"), &Mapping::default()).unwrap()).state.employees.len();
    assert_eq!(source.employee_count(), all - 1);
}
