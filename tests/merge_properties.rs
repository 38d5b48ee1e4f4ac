//! The merge is deterministic: any row order gives the same output.

use hr_core::{load_input_dir, merge, Mapping};
use hr_testdata::{Dataset, GenerateOptions};
use proptest::prelude::*;
use rand::{seq::SliceRandom, SeedableRng};

fn shuffle_file(path: &std::path::Path, has_header: bool, seed: u64, duplicate_every: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let header = if has_header { Some(lines.remove(0)) } else { None };
    let extra: Vec<&str> = lines.iter().step_by(duplicate_every.max(1)).copied().collect();
    lines.extend(extra);
    lines.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut out = header.map(|h| format!("{h}\n")).unwrap_or_default();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn merge_output_is_independent_of_row_order(seed in any::<u64>(), dup in 7usize..40) {
        let options = GenerateOptions { employees: 300, teams: 120, master_data: 20, permissions: 40, anomaly_share: 0.03, ..Default::default() };
        let data = Dataset::generate(&options);
        let original = tempfile::tempdir().unwrap();
        let shuffled = tempfile::tempdir().unwrap();
        data.write(original.path()).unwrap();
        data.write(shuffled.path()).unwrap();
        for (file, header) in [("company_a/employees.csv", true), ("company_a/departments.csv", true), ("company_b/employees.jsonl", false), ("company_b/org_units.jsonl", false), ("master_data.csv", true), ("permissions.jsonl", false)] {
            shuffle_file(&shuffled.path().join(file), header, seed, dup);
        }
        let mut a = merge(load_input_dir(original.path(), &Mapping::default()).unwrap());
        let mut b = merge(load_input_dir(shuffled.path(), &Mapping::default()).unwrap());
        // The two directories were written moments apart: only their export times may differ.
        (a.state.exported_at, b.state.exported_at) = (None, None);
        prop_assert_eq!(&a.state, &b.state);
        prop_assert_eq!(&a.report.conflicts, &b.report.conflicts);
        prop_assert_eq!(&a.report.warnings, &b.report.warnings);
        prop_assert_eq!(a.report.matched_persons, b.report.matched_persons);
        // Line numbers move with the rows; what was quarantined, and why, does not
        // (apart from the planted duplicates, quarantined as duplicate_source_id).
        let why = |r: &hr_core::MergeReport| {
            let mut v: Vec<_> = r.quarantined.iter().filter(|q| q.reason != hr_core::Reason::DuplicateSourceId).map(|q| (q.file.clone(), q.id.clone(), q.reason)).collect();
            v.sort();
            v.dedup();
            v
        };
        prop_assert_eq!(why(&a.report), why(&b.report));
    }
}
