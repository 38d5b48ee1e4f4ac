//! # hr-testdata
//!
//! A deterministic synthetic two-company dataset in the input contract's layout.
//!
//! The same options always give byte-identical files, so tests, benchmarks
//! and the demo work on the same data.
//!
//! ```
//! use hr_testdata::{Dataset, GenerateOptions};
//! let dir = std::env::temp_dir().join(format!("hr-testdata-doc-{}", std::process::id()));
//! Dataset::generate(&GenerateOptions::scaled(100)).write(&dir).unwrap();
//! assert!(dir.join(hr_core::input::A_EMPLOYEES).exists());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
#![warn(missing_docs)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::io::Write;
use std::path::Path;

// The input contract's file names, relative to the input directory.
const A_EMP: &str = hr_core::input::A_EMPLOYEES;
const A_DEPT: &str = hr_core::input::A_DEPARTMENTS;
const B_EMP: &str = hr_core::input::B_EMPLOYEES;
const B_ORG: &str = hr_core::input::B_ORG_UNITS;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Employees over both companies (default 10,000, the seed's scenario).
    pub employees: usize,
    /// Teams over both companies (default 10,000).
    pub teams: usize,
    /// `md.category` master data rows (default 100).
    pub master_data: usize,
    /// Permission events (default: one per 20 employees).
    pub permissions: usize,
    /// Share of people employed by both companies (same person key).
    pub shared_person_share: f64,
    /// Share of rows replaced by planted anomalies (0 = clean data).
    pub anomaly_share: f64,
    /// Random seed.
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { employees: 10_000, teams: 10_000, master_data: 100, permissions: 500, shared_person_share: 0.02, anomaly_share: 0.0, seed: 42 }
    }
}

impl GenerateOptions {
    /// The seed scenario scaled to `employees` (teams scale with it).
    pub fn scaled(employees: usize) -> Self {
        GenerateOptions { employees, teams: employees, permissions: (employees / 20).max(1), ..Default::default() }
    }
}

const SURNAMES: [&str; 12] = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오"];
const SURNAMES_EN: [&str; 12] = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han", "Oh"];
const GIVEN: [&str; 16] = ["민준", "서연", "도윤", "지우", "하준", "서윤", "은우", "하은", "시우", "지아", "주원", "수아", "지호", "예은", "건우", "윤서"];
const GIVEN_EN: [&str; 16] =
    ["Minjun", "Seoyeon", "Doyun", "Jiwoo", "Hajun", "Seoyun", "Eunwoo", "Haeun", "Siwoo", "Jia", "Juwon", "Sua", "Jiho", "Yeeun", "Geonwoo", "Yunseo"];
const RANKS: [&str; 7] = ["사원", "주임", "대리", "과장", "차장", "부장", "이사"];

/// One person as generated, before being written in either company's format.
#[derive(Debug, Clone)]
pub struct Person {
    /// Company-local numeric id.
    pub local_id: u64,
    /// 0 = company A, 1 = company B.
    pub company: u8,
    /// Index into the name tables.
    pub surname: usize,
    /// Index into the given-name tables.
    pub given: usize,
    /// Birth date (y, m, d).
    pub birth: (i32, u32, u32),
    /// Hire date (y, m, d).
    pub hire: (i32, u32, u32),
    /// Grade 1..=7.
    pub grade: usize,
    /// Company-local team id.
    pub team: u64,
    /// Company-local manager id.
    pub manager: Option<u64>,
    /// 0 active, 1 on leave, 2 terminated.
    pub status: u8,
    /// Person key (hex) if known.
    pub person_key: Option<String>,
    /// Yearly salary in KRW.
    pub salary: Option<u64>,
    /// Seconds since 2026-01-01T00:00:00Z of the last change.
    pub updated: i64,
}

/// One team.
#[derive(Debug, Clone)]
pub struct Team {
    /// Company-local id.
    pub local_id: u64,
    /// 0 = A, 1 = B.
    pub company: u8,
    /// Parent's company-local id, `None` = top level.
    pub parent: Option<u64>,
    /// Leader's company-local id.
    pub leader: Option<u64>,
    /// Name.
    pub name: String,
    /// Seconds since 2026-01-01 of the last change.
    pub updated: i64,
}

/// A generated dataset, kept in memory so that later runs can change it.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Everyone, both companies.
    pub people: Vec<Person>,
    /// Every team, both companies.
    pub teams: Vec<Team>,
    /// `(set, code, name)` rows.
    pub master_data: Vec<(String, String, String)>,
    /// Permission events as JSON lines.
    pub permissions: Vec<String>,
    /// Raw anomalous lines appended per file.
    pub anomalies: Vec<(&'static str, String)>,
    rng_state: u64,
}

fn person_key(n: u64) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("national-id-{n}").as_bytes()))
}

impl Dataset {
    /// Generates a dataset.
    pub fn generate(options: &GenerateOptions) -> Dataset {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let mut teams = Vec::with_capacity(options.teams);
        let per_company_teams = [options.teams.div_ceil(2), options.teams / 2];
        for company in 0..2u8 {
            let base = if company == 0 { 1000 } else { 5_000_000 };
            for i in 0..per_company_teams[company as usize] as u64 {
                let parent = if i < 8 { None } else { Some(base + rng.random_range(0..i)) };
                teams.push(Team {
                    local_id: base + i,
                    company,
                    parent,
                    leader: None,
                    name: format!("{} 팀 {}", ["A", "B"][company as usize], i + 1),
                    updated: rng.random_range(0..20_000_000),
                });
            }
        }
        let per_company_people = [options.employees.div_ceil(2), options.employees / 2];
        let mut people = Vec::with_capacity(options.employees);
        let mut next_national = 1u64;
        for company in 0..2u8 {
            let base = if company == 0 { 100_000 } else { 700_000 };
            let team_base = if company == 0 { 1000 } else { 5_000_000 };
            let nteams = per_company_teams[company as usize].max(1) as u64;
            for i in 0..per_company_people[company as usize] as u64 {
                let status = match rng.random_range(0..100) {
                    0..=91 => 0,
                    92..=95 => 1,
                    _ => 2,
                };
                people.push(Person {
                    local_id: base + i,
                    company,
                    surname: rng.random_range(0..SURNAMES.len()),
                    given: rng.random_range(0..GIVEN.len()),
                    birth: (rng.random_range(1960..2003), rng.random_range(1..=12), rng.random_range(1..=28)),
                    hire: (rng.random_range(1990..2026), rng.random_range(1..=12), rng.random_range(1..=28)),
                    grade: rng.random_range(1..=7),
                    team: team_base + rng.random_range(0..nteams),
                    manager: if i == 0 { None } else { Some(base + rng.random_range(0..i)) },
                    status,
                    person_key: if rng.random_bool(0.9) {
                        next_national += 1;
                        Some(person_key(next_national))
                    } else {
                        None
                    },
                    salary: if rng.random_bool(0.95) { Some(rng.random_range(30_000..150_000) * 1000) } else { None },
                    updated: rng.random_range(0..20_000_000),
                });
            }
        }
        // People employed by both companies: B's record takes A's person key.
        let a_count = per_company_people[0];
        let shared = ((people.len() - a_count) as f64 * options.shared_person_share) as usize;
        for j in 0..shared.min(a_count) {
            let a_idx = j * (a_count / shared.max(1)).max(1) % a_count;
            let b_idx = a_count + j;
            if b_idx >= people.len() {
                break;
            }
            let key = Some(person_key(1_000_000_000 + j as u64));
            people[a_idx].person_key = key.clone();
            people[b_idx].person_key = key;
            // One of the two is no longer active there (a transfer).
            people[a_idx].status = 2;
        }
        // Leaders: a member of each team where one exists.
        let mut first_member = std::collections::HashMap::new();
        for p in &people {
            first_member.entry((p.company, p.team)).or_insert(p.local_id);
        }
        for t in &mut teams {
            t.leader = first_member.get(&(t.company, t.local_id)).copied();
        }
        let master_data = (0..options.master_data).map(|i| ("md.category".to_string(), format!("C{:04}", i + 1), format!("카테고리 {}", i + 1))).collect();
        let systems = ["erp", "payroll", "orgchart"];
        let roles = ["viewer", "approver", "admin"];
        let permissions = (0..options.permissions)
            .map(|i| {
                let p = &people[(i * 7919) % people.len().max(1)];
                let id = format!("{}-{}", ["A", "B"][p.company as usize], p.local_id);
                json!({"employee": id, "system": systems[i % 3], "role": roles[(i / 3) % 3], "op": if i % 10 == 9 { "revoke" } else { "grant" },
                       "expires": if i % 4 == 0 { json!("2027-12-31") } else { json!(null) },
                       "at": format!("2026-10-{:02}T09:00:00Z", 1 + i % 28)})
                .to_string()
            })
            .collect();
        let mut data = Dataset { people, teams, master_data, permissions, anomalies: Vec::new(), rng_state: rng.random() };
        if options.anomaly_share > 0.0 {
            data.plant_anomalies(options.anomaly_share);
        }
        data
    }

    fn plant_anomalies(&mut self, share: f64) {
        let n = ((self.people.len() as f64 * share) as usize).max(1);
        for i in 0..n {
            let id = 990_000 + i as u64;
            let line = match i % 6 {
                0 => (A_EMP, format!("{id},홍길동,Gildong Hong,not-an-email,1000,사원,20200101,재직,,,19900101,,,2026-01-01 00:00:00")),
                1 => (A_EMP, format!("{id},홍길동,Gildong Hong,g{id}@a.example,1000,사원,2020-01-01,재직,,,19900101,,,2026-01-01 00:00:00")),
                2 => (A_EMP, format!("{id},홍길동,Gildong Hong,g{id}@a.example,1000,회장,20200101,재직,,,19900101,,,2026-01-01 00:00:00")),
                3 => (A_EMP, format!("{id},홍길동,Gildong Hong,g{id}@a.example,NOPE,사원,20200101,재직,,,19900101,,,2026-01-01 00:00:00")),
                4 => (B_EMP, format!("{{\"employeeId\": {id}, \"firstName\": \"Broken\"")),
                _ => (B_EMP, json!({"employeeId": id, "firstName": "No", "lastName": "Grade", "displayNameKo": "무등급", "email": format!("n{id}@b.example"), "orgUnitId": 5_000_000, "grade": "G9", "startDate": "2020-01-01", "active": true, "leave": null, "managerId": null, "birthDate": null, "personKey": null, "salary": null, "lastModified": "2026-01-01T00:00:00Z"}).to_string()),
            };
            self.anomalies.push(line);
        }
    }

    /// The next periodic run: `share` of employees change (grade, team or
    /// name) and `departures` employees leave the export.
    pub fn evolve(&mut self, share: f64, departures: usize) {
        let mut rng = StdRng::seed_from_u64(self.rng_state);
        let n = (self.people.len() as f64 * share) as usize;
        for _ in 0..n {
            let i = rng.random_range(0..self.people.len());
            let p = &mut self.people[i];
            p.grade = (p.grade % 7) + 1;
            p.updated += 86_400;
        }
        for _ in 0..departures.min(self.people.len()) {
            // Departures from company B's tail: nobody manages them, so no references dangle.
            let idx = self.people.len() - 1 - rng.random_range(0..(self.people.len() / 10).max(1));
            self.people.remove(idx);
        }
        self.rng_state = rng.random();
    }

    /// Writes the input directory.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("company_a"))?;
        std::fs::create_dir_all(dir.join("company_b"))?;
        let ts = |secs: i64| chrono::DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap_or_default();
        let anomalies = |file: &'static str| self.anomalies.iter().filter(move |(f, _)| *f == file).map(|(_, l)| l.as_str());

        let mut a = std::io::BufWriter::new(std::fs::File::create(dir.join(A_EMP))?);
        writeln!(a, "emp_no,name,name_en,email,dept_code,rank,hire_date,status,phone,manager_emp_no,birth_date,person_key,base_salary,updated_at")?;
        let mut b = std::io::BufWriter::new(std::fs::File::create(dir.join(B_EMP))?);
        for p in &self.people {
            let name = format!("{}{}", SURNAMES[p.surname], GIVEN[p.given]);
            if p.company == 0 {
                let kst = ts(p.updated) + chrono::Duration::hours(9);
                writeln!(
                    a,
                    "{},{},{} {},{}.{}@a.example,{},{},{:04}{:02}{:02},{},010-{:04}-{:04},{},{:04}{:02}{:02},{},{},{}",
                    p.local_id,
                    name,
                    GIVEN_EN[p.given],
                    SURNAMES_EN[p.surname],
                    GIVEN_EN[p.given].to_lowercase(),
                    p.local_id,
                    p.team,
                    RANKS[p.grade - 1],
                    p.hire.0,
                    p.hire.1,
                    p.hire.2,
                    ["재직", "휴직", "퇴직"][p.status as usize],
                    p.local_id % 10_000,
                    (p.local_id * 7) % 10_000,
                    p.manager.map(|m| m.to_string()).unwrap_or_default(),
                    p.birth.0,
                    p.birth.1,
                    p.birth.2,
                    p.person_key.clone().unwrap_or_default(),
                    p.salary.map(|s| s.to_string()).unwrap_or_default(),
                    kst.format("%Y-%m-%d %H:%M:%S")
                )?;
            } else {
                let row = json!({
                    "employeeId": p.local_id, "firstName": GIVEN_EN[p.given], "lastName": SURNAMES_EN[p.surname], "displayNameKo": name,
                    "email": format!("{}.{}@b.example", GIVEN_EN[p.given].to_lowercase(), p.local_id), "orgUnitId": p.team,
                    "grade": format!("G{}", p.grade), "startDate": format!("{:04}-{:02}-{:02}", p.hire.0, p.hire.1, p.hire.2),
                    "active": p.status != 2, "leave": if p.status == 1 { json!("parental") } else { json!(null) },
                    "managerId": p.manager, "birthDate": format!("{:04}-{:02}-{:02}", p.birth.0, p.birth.1, p.birth.2),
                    "personKey": p.person_key, "salary": p.salary.map(|s| json!({"amount": s, "currency": "KRW"})),
                    "lastModified": ts(p.updated).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                writeln!(b, "{row}")?;
            }
        }
        for l in anomalies(A_EMP) {
            writeln!(a, "{l}")?;
        }
        for l in anomalies(B_EMP) {
            writeln!(b, "{l}")?;
        }
        a.flush()?;
        b.flush()?;

        let mut d = std::io::BufWriter::new(std::fs::File::create(dir.join(A_DEPT))?);
        writeln!(d, "dept_code,dept_name,parent_dept_code,leader_emp_no,updated_at")?;
        let mut o = std::io::BufWriter::new(std::fs::File::create(dir.join(B_ORG))?);
        for t in &self.teams {
            if t.company == 0 {
                let kst = ts(t.updated) + chrono::Duration::hours(9);
                writeln!(
                    d,
                    "{},{},{},{},{}",
                    t.local_id,
                    t.name,
                    t.parent.map(|p| p.to_string()).unwrap_or_default(),
                    t.leader.map(|p| p.to_string()).unwrap_or_default(),
                    kst.format("%Y-%m-%d %H:%M:%S")
                )?;
            } else {
                writeln!(
                    o,
                    "{}",
                    json!({"orgUnitId": t.local_id, "name": t.name, "parentId": t.parent, "headId": t.leader, "lastModified": ts(t.updated).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
                )?;
            }
        }
        d.flush()?;
        o.flush()?;

        let mut m = std::io::BufWriter::new(std::fs::File::create(dir.join("master_data.csv"))?);
        writeln!(m, "set,code,name")?;
        for (s, c, n) in &self.master_data {
            writeln!(m, "{s},{c},{n}")?;
        }
        m.flush()?;
        let mut g = std::io::BufWriter::new(std::fs::File::create(dir.join("permissions.jsonl"))?);
        for l in &self.permissions {
            writeln!(g, "{l}")?;
        }
        g.flush()
    }
}
