//! The input directory's files and the header each CSV file must carry.

/// Company A's employee file.
pub const A_EMPLOYEES: &str = "company_a/employees.csv";
/// Company A's department file.
pub const A_DEPARTMENTS: &str = "company_a/departments.csv";
/// Company B's employee file.
pub const B_EMPLOYEES: &str = "company_b/employees.jsonl";
/// Company B's org unit file.
pub const B_ORG_UNITS: &str = "company_b/org_units.jsonl";
/// Optional master data file.
pub const MASTER_DATA: &str = "master_data.csv";
/// Optional permission grants file.
pub const PERMISSIONS: &str = "permissions.jsonl";
/// Optional export manifest: `{"exported_at": "<RFC 3339 time>"}`, when the
/// source system made the export. Without it, the export counts as made
/// when its oldest file was last modified.
pub const MANIFEST: &str = "manifest.json";

/// Header of `company_a/employees.csv`.
pub const A_EMPLOYEE_COLUMNS: [&str; 14] = [
    "emp_no",
    "name",
    "name_en",
    "email",
    "dept_code",
    "rank",
    "hire_date",
    "status",
    "phone",
    "manager_emp_no",
    "birth_date",
    "person_key",
    "base_salary",
    "updated_at",
];
/// Header of `company_a/departments.csv`.
pub const A_DEPARTMENT_COLUMNS: [&str; 5] = ["dept_code", "dept_name", "parent_dept_code", "leader_emp_no", "updated_at"];
/// Required columns of `master_data.csv` (further columns become attributes).
pub const MASTER_DATA_COLUMNS: [&str; 3] = ["set", "code", "name"];
