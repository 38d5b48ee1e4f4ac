//! Small input directories written to disk for the importer and merge tests.
#![allow(dead_code)]

use std::path::Path;

pub const A_HEADER: &str = "emp_no,name,name_en,email,dept_code,rank,hire_date,status,phone,manager_emp_no,birth_date,person_key,base_salary,updated_at";
pub const D_HEADER: &str = "dept_code,dept_name,parent_dept_code,leader_emp_no,updated_at";
pub const KEY1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
pub const KEY2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// A valid company A employee row.
pub fn a_row(emp_no: &str, dept: &str, manager: &str, key: &str, updated: &str) -> String {
    format!("{emp_no},김민준,Minjun Kim,m{emp_no}@a.example,{dept},과장,20200102,재직,010-1111-2222,{manager},19900101,{key},50000000,{updated}")
}

/// A valid company B employee line.
pub fn b_line(id: u64, org: u64, manager: Option<u64>, key: Option<&str>, active: bool, modified: &str) -> String {
    serde_json::json!({"employeeId": id, "firstName": "Seoyeon", "lastName": "Lee", "displayNameKo": "이서연",
        "email": format!("s{id}@b.example"), "orgUnitId": org, "grade": "G3", "startDate": "2021-03-01",
        "active": active, "leave": null, "managerId": manager, "birthDate": "1992-05-06", "personKey": key,
        "salary": {"amount": 60000000, "currency": "KRW"}, "lastModified": modified})
    .to_string()
}

/// A valid company B org unit line.
pub fn unit_line(id: u64, parent: Option<u64>, head: Option<u64>) -> String {
    serde_json::json!({"orgUnitId": id, "name": format!("팀 {id}"), "parentId": parent, "headId": head, "lastModified": "2026-01-01T00:00:00Z"}).to_string()
}

pub struct Input<'a> {
    /// Company A's employee header: [`A_HEADER`] unless a test adds columns.
    pub a_header: String,
    pub a_employees: Vec<String>,
    pub a_departments: Vec<String>,
    pub b_employees: Vec<String>,
    pub b_org_units: Vec<String>,
    pub master_data: Option<Vec<&'a str>>,
    pub permissions: Option<Vec<String>>,
}

impl Default for Input<'_> {
    fn default() -> Self {
        Input {
            a_header: A_HEADER.into(),
            a_employees: vec![a_row("1", "D1", "", "", "2026-01-01 09:00:00")],
            a_departments: vec!["D1,본부,,1,2026-01-01 09:00:00".into()],
            b_employees: vec![b_line(1, 10, None, None, true, "2026-01-01T00:00:00Z")],
            b_org_units: vec![unit_line(10, None, Some(1))],
            master_data: None,
            permissions: None,
        }
    }
}

impl Input<'_> {
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir.join("company_a")).unwrap();
        std::fs::create_dir_all(dir.join("company_b")).unwrap();
        let lines = |header: Option<&str>, rows: &[String]| {
            let mut s = header.map(|h| format!("{h}\n")).unwrap_or_default();
            for r in rows {
                s.push_str(r);
                s.push('\n');
            }
            s
        };
        std::fs::write(dir.join("company_a/employees.csv"), lines(Some(&self.a_header), &self.a_employees)).unwrap();
        std::fs::write(dir.join("company_a/departments.csv"), lines(Some(D_HEADER), &self.a_departments)).unwrap();
        std::fs::write(dir.join("company_b/employees.jsonl"), lines(None, &self.b_employees)).unwrap();
        std::fs::write(dir.join("company_b/org_units.jsonl"), lines(None, &self.b_org_units)).unwrap();
        if let Some(md) = &self.master_data {
            let rows: Vec<String> = md.iter().map(|s| s.to_string()).collect();
            std::fs::write(dir.join("master_data.csv"), lines(Some("set,code,name"), &rows)).unwrap();
        }
        if let Some(p) = &self.permissions {
            std::fs::write(dir.join("permissions.jsonl"), lines(None, p)).unwrap();
        }
    }

    pub fn merge(&self) -> hr_core::MergeOutcome {
        let dir = tempfile::tempdir().unwrap();
        self.write(dir.path());
        let source = hr_core::load_input_dir(dir.path(), &hr_core::Mapping::default()).unwrap();
        hr_core::merge(source)
    }
}
