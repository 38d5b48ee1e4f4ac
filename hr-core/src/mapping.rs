//! `mapping.toml`: how the two companies' codes map onto the unified schema.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The mapping shipped with the library; used when an input has none.
pub const DEFAULT_MAPPING_TOML: &str = include_str!("../mapping.default.toml");

/// Grade maps and the other per-company rules.
///
/// ```
/// let m = hr_core::Mapping::default();
/// assert_eq!(m.grade_a("과장"), Some("manager"));
/// assert_eq!(m.grade_b("G7"), Some("director"));
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Grade maps per company.
    pub grades: GradeMaps,
    /// Company A's rules.
    #[serde(default)]
    pub company_a: CompanyARules,
}

/// Source grade -> unified grade, per company.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeMaps {
    /// Company A's Korean ranks.
    pub company_a: BTreeMap<String, String>,
    /// Company B's `G1`..`G7`.
    pub company_b: BTreeMap<String, String>,
}

/// Rules for reading company A's export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyARules {
    /// Offset from UTC of `updated_at` (default 9, Korea time).
    #[serde(default = "default_offset")]
    pub utc_offset_hours: i32,
    /// Currency of `base_salary` (default `KRW`).
    #[serde(default = "default_currency")]
    pub salary_currency: String,
}

fn default_offset() -> i32 {
    9
}
fn default_currency() -> String {
    "KRW".into()
}

impl Default for CompanyARules {
    fn default() -> Self {
        CompanyARules { utc_offset_hours: default_offset(), salary_currency: default_currency() }
    }
}

/// A mapping file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The file could not be read.
    #[error("cannot read mapping file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or breaks the mapping's shape.
    #[error("mapping file {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A rule's value is out of range.
    #[error("mapping file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Default for Mapping {
    fn default() -> Self {
        // The shipped file is checked by a unit test; an error here is a build defect.
        Mapping::from_toml_str(DEFAULT_MAPPING_TOML, "mapping.default.toml").expect("the shipped default mapping parses")
    }
}

impl Mapping {
    /// Parses a mapping; `path` is only used in error messages.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Self, MappingError> {
        let mapping: Mapping = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(0);
            MappingError::Parse { path: path.to_string(), line, message: e.message().to_string() }
        })?;
        if !(-14..=14).contains(&mapping.company_a.utc_offset_hours) {
            return Err(MappingError::Invalid {
                path: path.into(),
                message: format!("company_a.utc_offset_hours {} is not between -14 and 14", mapping.company_a.utc_offset_hours),
            });
        }
        Ok(mapping)
    }

    /// Reads `path`.
    pub fn from_file(path: &Path) -> Result<Self, MappingError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MappingError::Io { path: shown.clone(), source })?;
        Self::from_toml_str(&text, &shown)
    }

    /// `<dir>/mapping.toml` if present, else the default.
    pub fn for_input_dir(dir: &Path) -> Result<Self, MappingError> {
        let path = dir.join("mapping.toml");
        if path.exists() {
            Self::from_file(&path)
        } else {
            Ok(Self::default())
        }
    }

    /// Unified grade of a company A rank.
    pub fn grade_a(&self, rank: &str) -> Option<&str> {
        self.grades.company_a.get(rank).map(String::as_str)
    }

    /// Unified grade of a company B grade.
    pub fn grade_b(&self, grade: &str) -> Option<&str> {
        self.grades.company_b.get(grade).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_covers_every_rank_and_grade_of_the_input_contract() {
        let m = Mapping::default();
        for rank in ["사원", "주임", "대리", "과장", "차장", "부장", "이사"] {
            assert!(m.grade_a(rank).is_some(), "{rank}");
        }
        for g in 1..=7 {
            assert!(m.grade_b(&format!("G{g}")).is_some());
        }
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = Mapping::from_toml_str("[grades.company_a]\nx = \"y\"\n[grades.company_b\n", "m.toml").unwrap_err();
        match err {
            MappingError::Parse { line, path, .. } => {
                assert_eq!(path, "m.toml");
                assert_eq!(line, 3);
            }
            other => panic!("{other}"),
        }
    }
}
