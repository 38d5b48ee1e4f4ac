//! Readers for the two companies' exports (docs/input-contract.md).
//!
//! Every file goes through one reader ([`reader::read_file`]): records stream
//! out with a bounded size, the file's format ([`csv::Csv`], [`jsonl::Jsonl`])
//! makes each a row, and the file's parser makes each row a source record or a
//! quarantine entry naming file, line and field. A bad record is quarantined
//! and the rest proceed (a record that is not text of its file's encoding
//! too, see [`encoding`]); only a missing or unreadable file, a wrong or
//! undecodable CSV header, or a CSV file of an encoding that cannot be told
//! stops the import, with an error naming the file.

mod company_a;
mod company_b;
mod csv;
mod encoding;
mod error;
mod exported;
mod fields;
mod files;
mod jsonl;
mod memory;
mod reader;
mod records;
mod shared;
mod source;
mod workbook;

pub use error::ImportError;
pub use files::*;
pub use memory::{fits_in_memory, MEMORY_PER_INPUT_BYTE};
pub use source::SourceData;
pub(crate) use source::{PermissionOp, PersonKey, SourceEmployee, SourceMasterData, SourceOrgUnit, SourcePermission};

use crate::mapping::Mapping;
use reader::FilePart;
use std::path::Path;

/// Reads an input directory laid out as docs/input-contract.md describes.
///
/// Records are streamed (each is held only while it is read, and one over
/// 1 MiB is quarantined unread), but the merge holds the whole state: an input
/// whose merge would not fit in the memory this process may use (the
/// machine's, or its cgroup's limit) is refused up front
/// ([`ImportError::TooLarge`], see [`fits_in_memory`]).
///
/// The files are read on all cores (rayon's pool), company B's JSON-lines
/// files in parts of whole lines; what was read is put together in file
/// order, each part's line numbers counted on from the parts before it, and
/// the error of the first file in order that failed is the one returned,
/// so the result is the same as reading the files one after another.
pub fn load_input_dir(dir: &Path, mapping: &Mapping) -> Result<SourceData, ImportError> {
    check_memory(dir)?;
    load_in_parts(dir, mapping, PART_BYTES)
}

/// [`load_input_dir`] without the memory check, company B's files read in
/// parts of about `part_bytes`.
fn load_in_parts(dir: &Path, mapping: &Mapping, part_bytes: u64) -> Result<SourceData, ImportError> {
    use rayon::prelude::*;
    let pieces = Piece::all(dir, part_bytes);
    let read: Vec<Result<(SourceData, u64), ImportError>> = pieces.par_iter().map(|piece| piece.read(dir, mapping)).collect();
    let mut data = SourceData::default();
    data.reserve_for(read.iter().filter_map(|r| r.as_ref().ok()).map(|(piece, _)| piece));
    let mut lines_before = 0;
    for (piece, result) in pieces.iter().zip(read) {
        // A part's lines count on from the parts of its file before it.
        let offset = if piece.continues_a_file() { lines_before } else { 0 };
        let (mut read, lines) = result.map_err(|e| e.lines_shifted(offset))?;
        read.shift_lines(offset);
        lines_before = offset + lines;
        data.append(read);
    }
    // Each file's entries in line order, however its parts were cut.
    data.quarantined.chunk_by_mut(|a, b| a.file == b.file).for_each(|file| file.sort_by_key(|entry| entry.line));
    data.exported_at = Some(exported::exported_at(dir)?);
    data.a_utc_offset_hours = mapping.company_a.utc_offset_hours;
    Ok(data)
}

/// Company B's JSON-lines files are read in parts of about this many bytes,
/// so that all cores share them.
const PART_BYTES: u64 = 16 << 20;

/// One piece of an input directory to read: a file, or a part of one.
enum Piece {
    CompanyAEmployees,
    CompanyADepartments,
    CompanyBEmployees(FilePart),
    CompanyBOrgUnits(FilePart),
    MasterData,
    Permissions,
}

impl Piece {
    /// Every piece of `dir`, in file order, parts of about `part_bytes`.
    fn all(dir: &Path, part_bytes: u64) -> Vec<Piece> {
        // A file that cannot be cut is read whole, which reports why it cannot be read.
        let parts = |file| FilePart::lines_of(dir, file, part_bytes).unwrap_or_else(|_| vec![FilePart::WHOLE]);
        let mut pieces = vec![Piece::CompanyAEmployees, Piece::CompanyADepartments];
        pieces.extend(parts(B_EMPLOYEES).into_iter().map(Piece::CompanyBEmployees));
        pieces.extend(parts(B_ORG_UNITS).into_iter().map(Piece::CompanyBOrgUnits));
        pieces.extend([Piece::MasterData, Piece::Permissions]);
        pieces
    }

    /// Whether this piece is a part of a file after its first part.
    fn continues_a_file(&self) -> bool {
        match self {
            Piece::CompanyBEmployees(part) | Piece::CompanyBOrgUnits(part) => !part.is_first(),
            _ => false,
        }
    }

    /// What the piece holds, and the lines it spans.
    fn read(&self, dir: &Path, mapping: &Mapping) -> Result<(SourceData, u64), ImportError> {
        let mut data = SourceData::default();
        let lines = match self {
            Piece::CompanyAEmployees => company_a::employees(dir, mapping)?.into(&mut data.employees, &mut data.quarantined),
            Piece::CompanyADepartments => company_a::departments(dir, mapping)?.into(&mut data.org_units, &mut data.quarantined),
            Piece::CompanyBEmployees(part) => company_b::employees(dir, mapping, *part)?.into(&mut data.employees, &mut data.quarantined),
            Piece::CompanyBOrgUnits(part) => company_b::org_units(dir, *part)?.into(&mut data.org_units, &mut data.quarantined),
            Piece::MasterData if dir.join(MASTER_DATA).exists() => shared::master_data(dir)?.into(&mut data.master_data, &mut data.quarantined),
            Piece::Permissions if dir.join(PERMISSIONS).exists() => shared::permissions(dir)?.into(&mut data.permissions, &mut data.quarantined),
            Piece::MasterData | Piece::Permissions => 0,
        };
        Ok((data, lines))
    }
}

/// One line of permission events, with the line it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionLine {
    /// The line (the first is 1).
    pub line: u64,
    /// The grant or revocation, with `employee` as written (a unified id,
    /// or a source id of a merged person): the caller resolves it.
    pub event: crate::PermissionGrant,
}

/// Reads permission events in `permissions.jsonl`'s format from text (a
/// real-time request's body): each valid line's grant or revocation, and
/// each line that is not one, quarantined as coming from `source`, naming
/// line and field. Blank lines are skipped.
pub fn read_permission_lines(text: &str, source: &'static str) -> (Vec<PermissionLine>, Vec<crate::Quarantined>) {
    let mut lines = vec![];
    let mut quarantined = vec![];
    for (index, text) in text.lines().enumerate().filter(|(_, t)| !t.trim().is_empty()) {
        let origin = crate::quarantine::Origin { file: source, line: index as u64 + 1 };
        match shared::permission_line(origin, text) {
            // A call applies now: a change for a later day belongs in the export, which holds it until then.
            Ok(p) if p.effective.is_some_and(|d| d > chrono::Utc::now().date_naive()) => quarantined.push(origin.quarantine(
                Some(format!("{}:{}:{}", p.employee, p.system, p.role)),
                crate::Reason::MalformedRow,
                "field `effective` is after today: a real-time call applies now; a grant for a later day goes in the export's permissions.jsonl",
            )),
            Ok(p) => lines.push(PermissionLine {
                line: origin.line,
                event: crate::PermissionGrant {
                    employee: p.employee,
                    system: p.system,
                    role: p.role,
                    granted: p.op == PermissionOp::Grant,
                    expires: p.expires,
                    at: p.at,
                },
            }),
            Err(entry) => quarantined.push(entry),
        }
    }
    (lines, quarantined)
}

/// One row of a master data file, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterDataRow {
    /// The line of the file (the header is line 1).
    pub line: u64,
    /// The record.
    pub record: crate::MasterData,
}

/// Reads a file in `master_data.csv`'s format (`set,code,name[,attribute
/// columns...]`) from any path, as a system publishing the sets it owns
/// does: the rows in file order, and the rows quarantined (naming line and
/// field). A missing file or a wrong header is an error naming the file.
pub fn read_master_data_file(path: &Path) -> Result<(Vec<MasterDataRow>, Vec<crate::Quarantined>), ImportError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Quarantine entries name their file for as long as they live; a publish reads few files.
    let file: &'static str = Box::leak(name.into_boxed_str());
    let parsed = shared::master_data_in(dir, file)?;
    let rows = parsed
        .records
        .into_iter()
        .map(|md| MasterDataRow { line: md.origin.line, record: crate::MasterData { set: md.set, code: md.code, name: md.name, attributes: md.attributes } })
        .collect();
    Ok((rows, parsed.quarantined))
}

fn check_memory(dir: &Path) -> Result<(), ImportError> {
    let Some(available) = memory::available_memory() else { return Ok(()) };
    let input: u64 = [A_EMPLOYEES, A_DEPARTMENTS, B_EMPLOYEES, B_ORG_UNITS, MASTER_DATA, PERMISSIONS]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    fits_in_memory(input, available)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B_EMPLOYEE: &str = r#"{"employeeId": 1, "firstName": "Seoyeon", "lastName": "Lee", "displayNameKo": "이서연", "email": "s1@b.example", "orgUnitId": 10, "grade": "G3", "startDate": "2021-03-01", "active": true, "leave": null, "managerId": null, "birthDate": "1992-05-06", "personKey": null, "salary": null, "lastModified": "2026-01-01T00:00:00Z"}"#;

    /// Company B's files with what a reader must keep its place through:
    /// a byte-order mark, blank lines, CRLF line ends, malformed lines and
    /// records with a bad field, spread so that parts of a few bytes cut
    /// among them.
    fn write_input(dir: &Path, b_employees: &[u8]) {
        std::fs::create_dir_all(dir.join("company_a")).unwrap();
        std::fs::create_dir_all(dir.join("company_b")).unwrap();
        std::fs::write(dir.join(A_EMPLOYEES), A_EMPLOYEE_COLUMNS.join(",") + "\n").unwrap();
        std::fs::write(dir.join(A_DEPARTMENTS), A_DEPARTMENT_COLUMNS.join(",") + "\n").unwrap();
        std::fs::write(dir.join(B_EMPLOYEES), b_employees).unwrap();
        let unit = |id: u32| format!(r#"{{"orgUnitId": {id}, "name": "팀 {id}", "parentId": null, "headId": 1, "lastModified": "2026-01-01T00:00:00Z"}}"#);
        let units = [unit(10), String::new(), "not json".into(), unit(11), unit(12).replace("2026-01-01T", "2026-13-01T"), unit(13)].join("\n");
        std::fs::write(dir.join(B_ORG_UNITS), units).unwrap();
    }

    fn b_employees() -> Vec<u8> {
        let employee = |id: u32| B_EMPLOYEE.replace(r#""employeeId": 1,"#, &format!(r#""employeeId": {id},"#));
        let lines = [
            employee(1),
            String::new(),
            employee(2).replace("s1@b.example", "not an email"),
            "{\"employeeId\": 3,".into(),
            employee(4) + "\r",
            "   ".into(),
            employee(5),
            "[1, 2]".into(),
            employee(6),
        ];
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(lines.join("\n").into_bytes());
        bytes
    }

    #[test]
    fn files_read_in_parts_give_what_they_give_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_input(dir.path(), &b_employees());
        let whole = load_in_parts(dir.path(), &Mapping::default(), u64::MAX).unwrap();
        assert_eq!(whole.employees.len(), 4, "{:?}", whole.quarantined);
        assert_eq!(whole.org_units.len(), 3);
        assert_eq!(whole.quarantined.len(), 5, "{:?}", whole.quarantined);
        for part_bytes in [1, 40, 200, 400, 1000] {
            let pieces = Piece::all(dir.path(), part_bytes);
            assert!(pieces.len() > 6, "{part_bytes} bytes cut company B's files into {} pieces", pieces.len() - 4);
            let parts = load_in_parts(dir.path(), &Mapping::default(), part_bytes).unwrap();
            assert_eq!(parts.employees, whole.employees, "{part_bytes}");
            assert_eq!(parts.org_units, whole.org_units, "{part_bytes}");
            assert_eq!(parts.quarantined, whole.quarantined, "{part_bytes}");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_quarantined_by_its_line_in_the_file_not_in_its_part() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = b_employees();
        bytes.extend(b"\n\n{\"employeeId\": \"\xff\"}\n");
        write_input(dir.path(), &bytes);
        let whole = load_in_parts(dir.path(), &Mapping::default(), u64::MAX).unwrap();
        assert_eq!(whole.employees.len(), 4, "the other lines proceed");
        for part_bytes in [u64::MAX, 1, 300] {
            let read = load_in_parts(dir.path(), &Mapping::default(), part_bytes).unwrap();
            let bad: Vec<_> = read.quarantined.iter().filter(|q| q.reason == crate::Reason::InvalidEncoding).collect();
            assert_eq!(bad.len(), 1, "{part_bytes}: {:?}", read.quarantined);
            assert_eq!((bad[0].file.as_str(), bad[0].line), (B_EMPLOYEES, 11), "{part_bytes}");
        }
    }

    #[test]
    fn parts_cut_just_after_a_newline_and_cover_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b_employees();
        write_input(dir.path(), &bytes);
        for part_bytes in [1, 7, 100, 5000] {
            let parts = FilePart::lines_of(dir.path(), B_EMPLOYEES, part_bytes).unwrap();
            let longest_line = bytes.split(|b| *b == b'\n').map(<[u8]>::len).max().unwrap() as u64;
            for part in &parts[..parts.len() - 1] {
                assert!(part.end - part.start <= part_bytes + longest_line, "{part_bytes}: {part:?} is longer than a part and a line");
            }
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts.last().unwrap().end, u64::MAX);
            for pair in parts.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert_eq!(bytes[pair[1].start as usize - 1], b'\n', "{part_bytes}: cut at {}", pair[1].start);
            }
        }
    }
}
