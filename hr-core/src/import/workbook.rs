//! Company A's files as Excel workbooks, as many HR teams hand them over:
//! `company_a/employees.xlsx` and `company_a/departments.xlsx` (their first
//! sheet), or one `company_a.xlsx` with the sheets `employees` and
//! `departments`, read where the CSV file is absent.
//!
//! Cells become the text the CSV would hold: whole numbers without a
//! fraction (`1001`, not `1001.0`: ids, dates typed as numbers, salaries),
//! date cells as `YYYYMMDD` in date columns and `YYYY-MM-DD HH:MM:SS`
//! elsewhere, empty cells empty. A row's line is its row in the sheet.

use super::files::{A_DEPARTMENTS, A_EMPLOYEES};
use super::ImportError;
use calamine::{Data, Range, Reader};
use std::path::Path;

/// Where a CSV file may come as a workbook instead: its path, the sheet
/// (its first when `None`), and how errors and quarantine name it.
struct Alternative {
    csv: &'static str,
    path: &'static str,
    sheet: Option<&'static str>,
    shown: &'static str,
}

const ALTERNATIVES: [Alternative; 4] = [
    Alternative { csv: A_EMPLOYEES, path: "company_a/employees.xlsx", sheet: None, shown: "company_a/employees.xlsx" },
    Alternative { csv: A_EMPLOYEES, path: "company_a.xlsx", sheet: Some("employees"), shown: "company_a.xlsx, sheet employees" },
    Alternative { csv: A_DEPARTMENTS, path: "company_a/departments.xlsx", sheet: None, shown: "company_a/departments.xlsx" },
    Alternative { csv: A_DEPARTMENTS, path: "company_a.xlsx", sheet: Some("departments"), shown: "company_a.xlsx, sheet departments" },
];

/// Columns whose date cells are days (`YYYYMMDD`), not times.
const DATE_COLUMNS: [&str; 4] = ["hire_date", "termination_date", "effective_date", "birth_date"];

/// The sheet that stands for `csv` in `dir`, and its name in messages;
/// `None` when no workbook does.
pub(crate) fn sheet_for(dir: &Path, csv: &str) -> Result<Option<(&'static str, Range<Data>)>, ImportError> {
    for alternative in ALTERNATIVES.iter().filter(|a| a.csv == csv) {
        let path = dir.join(alternative.path);
        if !path.exists() {
            continue;
        }
        let unreadable = |detail: String| ImportError::Workbook { file: alternative.shown.to_string(), detail };
        let mut workbook = calamine::open_workbook_auto(&path).map_err(|e| unreadable(e.to_string()))?;
        let sheet = match alternative.sheet {
            Some(name) => name.to_string(),
            None => workbook.sheet_names().first().cloned().ok_or_else(|| unreadable("it has no sheet".into()))?,
        };
        if !workbook.sheet_names().contains(&sheet) {
            let names = workbook.sheet_names().join(", ");
            return Err(unreadable(format!("no sheet named {sheet:?} (it has: {names})")));
        }
        let range = workbook.worksheet_range(&sheet).map_err(|e| unreadable(e.to_string()))?;
        return Ok(Some((alternative.shown, range)));
    }
    Ok(None)
}

/// The text a cell of `column` stands for, as the CSV export would hold it.
pub(crate) fn cell_text(cell: &Data, column: &str) -> Result<String, String> {
    let days = DATE_COLUMNS.contains(&column);
    Ok(match cell {
        Data::Empty => String::new(),
        Data::String(text) => text.clone(),
        Data::Int(n) => n.to_string(),
        // Whole numbers (ids, salaries, dates typed as numbers) without float noise.
        Data::Float(x) if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 => format!("{}", *x as i64),
        Data::Float(x) => x.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(when) => {
            let (y, m, d, h, min, s, milli) = when.to_ymd_hms_milli();
            // A serial is a fraction of a day: 19:41:38 comes back as 19:41:37.999, so round to the second.
            // (calamine may even say 37 s and 1000 ms).
            let second = chrono::NaiveDate::from_ymd_opt(y.into(), m.into(), d.into())
                .and_then(|date| date.and_hms_opt(h.into(), min.into(), s.into()))
                .ok_or_else(|| format!("field `{column}`: the cell's date serial {} is not a date", when.as_f64()))?;
            let when = second + chrono::Duration::milliseconds(i64::from(milli) + 500);
            if days {
                when.format("%Y%m%d").to_string()
            } else {
                when.format("%Y-%m-%d %H:%M:%S").to_string()
            }
        }
        Data::DateTimeIso(text) if days => text.get(..10).unwrap_or(text).replace('-', ""),
        Data::DateTimeIso(text) => text.replacen('T', " ", 1),
        Data::DurationIso(text) => text.clone(),
        Data::Error(e) => return Err(format!("field `{column}`: the cell holds the spreadsheet error {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

    #[test]
    fn cells_read_as_the_csv_would_hold_them() {
        assert_eq!(cell_text(&Data::Float(1001.0), "emp_no").unwrap(), "1001");
        assert_eq!(cell_text(&Data::Float(134416000.0), "base_salary").unwrap(), "134416000");
        assert_eq!(cell_text(&Data::Float(20000724.0), "hire_date").unwrap(), "20000724");
        assert_eq!(cell_text(&Data::Float(0.5), "x").unwrap(), "0.5");
        assert_eq!(cell_text(&Data::Empty, "manager_emp_no").unwrap(), "");
        // 2026-05-12 19:41:38 as Excel stores it: days since 1899-12-30 and the fraction of the day
        // (which comes back as 19:41:37.999...).
        let serial = 46154.0 + (19.0 * 3600.0 + 41.0 * 60.0 + 38.0) / 86400.0;
        let when = Data::DateTime(ExcelDateTime::new(serial, ExcelDateTimeType::DateTime, false));
        assert_eq!(cell_text(&when, "updated_at").unwrap(), "2026-05-12 19:41:38");
        assert_eq!(cell_text(&when, "hire_date").unwrap(), "20260512");
        assert_eq!(cell_text(&Data::DateTimeIso("2000-07-24T00:00:00".into()), "hire_date").unwrap(), "20000724");
        let err = cell_text(&Data::Error(calamine::CellErrorType::Div0), "base_salary").unwrap_err();
        assert!(err.contains("base_salary"), "{err}");
    }
}
