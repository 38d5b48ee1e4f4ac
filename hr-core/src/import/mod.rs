//! Readers for the two companies' exports (the README's "Input contract").
//!
//! Every file goes through one reader ([`reader::read_file`]): records stream
//! out with a bounded size, the file's format ([`csv::Csv`], [`jsonl::Jsonl`])
//! makes each a row, and the file's parser makes each row a source record or a
//! quarantine entry naming file, line and field. A bad record is quarantined
//! and the rest proceed; only a missing or unreadable file, a wrong CSV header,
//! or invalid UTF-8 stops the import, with an error naming the file.

mod company_a;
mod company_b;
mod csv;
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

pub use error::ImportError;
pub use files::*;
pub use memory::{fits_in_memory, MEMORY_PER_INPUT_BYTE};
pub use source::SourceData;
pub(crate) use source::{PermissionOp, SourceEmployee, SourceMasterData, SourceOrgUnit, SourcePermission};

use crate::mapping::Mapping;
use std::path::Path;

/// Reads an input directory laid out as the README's "Input contract" describes.
///
/// Records are streamed (each is held only while it is read, and one over
/// 1 MiB is quarantined unread), but the merge holds the whole state: an input
/// whose merge would not fit in the memory this process may use (the
/// machine's, or its cgroup's limit) is refused up front
/// ([`ImportError::TooLarge`], see [`fits_in_memory`]).
///
/// Company A's files are read on a second thread while company B's and the
/// shared files are read on this one; the merge does not depend on record
/// order, so the result is the same as reading them one after another.
pub fn load_input_dir(dir: &Path, mapping: &Mapping) -> Result<SourceData, ImportError> {
    check_memory(dir)?;
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| read_company_a(dir, mapping));
        let b = read_company_b_and_shared(dir, mapping);
        // A panic in the reader is a bug, never caused by input (the fuzz tests hold that).
        (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
    });
    // Company A's error first, as if the files were read in order.
    let mut data = a?;
    data.append(b?);
    data.exported_at = Some(exported::exported_at(dir)?);
    Ok(data)
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

fn read_company_a(dir: &Path, mapping: &Mapping) -> Result<SourceData, ImportError> {
    let mut data = SourceData::default();
    company_a::employees(dir, mapping)?.into(&mut data.employees, &mut data.quarantined);
    company_a::departments(dir, mapping)?.into(&mut data.org_units, &mut data.quarantined);
    Ok(data)
}

fn read_company_b_and_shared(dir: &Path, mapping: &Mapping) -> Result<SourceData, ImportError> {
    let mut data = SourceData::default();
    company_b::employees(dir, mapping)?.into(&mut data.employees, &mut data.quarantined);
    company_b::org_units(dir)?.into(&mut data.org_units, &mut data.quarantined);
    if dir.join(MASTER_DATA).exists() {
        shared::master_data(dir)?.into(&mut data.master_data, &mut data.quarantined);
    }
    if dir.join(PERMISSIONS).exists() {
        shared::permissions(dir)?.into(&mut data.permissions, &mut data.quarantined);
    }
    Ok(data)
}
