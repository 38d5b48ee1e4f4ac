//! Core costs, each on the seed's realistic records:
//! - `merge/load_and_merge_2x100k`: read both companies' files and merge
//!   2 x 100,000 employees and 20,000 teams, up to the merged state (its
//!   drop, 40-50 ms of freeing millions of strings, is left out of the timed
//!   region, as a program keeps the state to plan from it);
//!   `..._cp949`: the same with company A's CSV files in CP949 (detected);
//! - `ledger/plan_reserve_commit_1m_employees_1pct_changed`: one periodic
//!   run's ledger work on 1,000,000 employees of which 1% changed: plan from
//!   the merged state (serializing and hashing every record), reserve the
//!   changed keys' versions, commit them (the ledger's file, as shipped);
//! - `sink/sqlite_{insert,update}_10k_employees`: a system's file-backed
//!   SQLite store as shipped (WAL) applying 10,000 employees as one batch,
//!   into an empty store (a first run) and over the same keys at a newer
//!   version (every delta run after it; the store maintains its digests
//!   then, as a system does once the hub first compared it);
//! - `sink/sqlite_{full,maintained}_digest_10k_employees`: what a comparison
//!   asks of a system holding 10,000 employees: a full read (every row read,
//!   every body hashed: the first comparison, `--check-only`, the hourly
//!   scan) and the digest it maintains as it applies changes (every other);
//! - `sink/scoped_sqlite_insert_10k_reduced_employees`: the same insert
//!   through the `ScopedSink` of a system that goes without phone and birth
//!   date (orgchart, erp), given its audience's copies.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hr_core::{load_input_dir, merge, ChangeEnvelope, DataType, Ledger, Mapping, MergedState, PlanOptions, RoutingPolicy, ScopedSink, Sink, SqliteSink};
use hr_testdata::{Dataset, GenerateOptions};
use serde_json::value::RawValue;

// The library leaves the allocator to the program. Ours use mimalloc: a
// merge of 2 x 100k employees takes 0.24 s with it and 0.38 s with the
// system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn merge_200k(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = GenerateOptions::scaled(200_000);
    options.teams = 20_000;
    Dataset::generate(&options).write(dir.path()).unwrap();
    let mapping = Mapping::default();
    let mut g = c.benchmark_group("merge");
    g.sample_size(10);
    g.bench_function("load_and_merge_2x100k", |b| b.iter_with_large_drop(|| merge(load_input_dir(dir.path(), &mapping).unwrap())));
    // The same export with company A's files in CP949, as Korean systems write them (detected, not declared).
    let cp949 = tempfile::tempdir().unwrap();
    Dataset::generate(&options).write(cp949.path()).unwrap();
    for file in ["company_a/employees.csv", "company_a/departments.csv"] {
        let text = std::fs::read_to_string(cp949.path().join(file)).unwrap();
        let (bytes, _, unmappable) = encoding_rs::EUC_KR.encode(&text);
        assert!(!unmappable, "every character has a CP949 code");
        std::fs::write(cp949.path().join(file), bytes).unwrap();
    }
    g.bench_function("load_and_merge_2x100k_cp949", |b| b.iter_with_large_drop(|| merge(load_input_dir(cp949.path(), &mapping).unwrap())));
    g.finish();
}

fn seed_state() -> MergedState {
    let dir = tempfile::tempdir().unwrap();
    Dataset::generate(&GenerateOptions::default()).write(dir.path()).unwrap();
    merge(load_input_dir(dir.path(), &Mapping::default()).unwrap()).state
}

/// `n` employees: the seed's merged employees repeated under fresh ids.
fn employees(n: usize) -> MergedState {
    let seed = seed_state();
    let mut state = MergedState::default();
    for (i, e) in seed.employees.values().cycle().take(n).enumerate() {
        let mut e = e.clone();
        e.id = format!("E-{i:07}").into();
        state.employees.insert(e.id.clone(), e);
    }
    state
}

fn ledger_run_1m(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path().join("ledger.sqlite3")).unwrap();
    let mut state = employees(N);
    let options = PlanOptions::default();
    let full = ledger.plan_state(&state, DataType::Employee, "bench", &options).unwrap();
    ledger.reserve(DataType::Employee, &full).unwrap();
    ledger.commit(DataType::Employee, &full).unwrap();
    let changing: Vec<hr_core::CompactString> = state.employees.keys().step_by(100).cloned().collect();
    let mut g = c.benchmark_group("ledger");
    g.sample_size(10);
    g.bench_function("plan_reserve_commit_1m_employees_1pct_changed", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                for key in &changing {
                    state.employees.get_mut(key).unwrap().updated_at += chrono::Duration::seconds(1);
                }
                let t = std::time::Instant::now();
                let delta = ledger.plan_state(&state, DataType::Employee, "bench", &options).unwrap();
                ledger.reserve(DataType::Employee, &delta).unwrap();
                ledger.commit(DataType::Employee, &delta).unwrap();
                total += t.elapsed();
                assert_eq!(delta.changes.len(), changing.len());
            }
            total
        })
    });
    g.finish();
}

fn at_version(records: &[(String, Box<RawValue>)], version: u64) -> Vec<ChangeEnvelope> {
    records.iter().map(|(k, v)| ChangeEnvelope::with_raw_payload(DataType::Employee, k.clone(), version, "bench", Some(v.clone()))).collect()
}

fn sqlite_apply_10k(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(String, Box<RawValue>)> = seed_state().records(DataType::Employee).map(|(k, v)| (k.to_string(), v.unwrap())).collect();
    let first = at_version(&records, 1);
    let mut g = c.benchmark_group("sink");
    g.sample_size(10);
    let mut files = 0u32;
    g.bench_function("sqlite_insert_10k_employees", |b| {
        b.iter_batched(
            || {
                files += 1;
                SqliteSink::open(dir.path().join(format!("insert-{files}.sqlite3"))).unwrap()
            },
            |sink| assert_eq!(rt.block_on(sink.apply(&first)).unwrap().applied, first.len()),
            BatchSize::PerIteration,
        )
    });
    // What orgchart and erp do with their audience's copies (no phone, no birth date): check the scope's fields, then store.
    let policy = RoutingPolicy::default();
    let reduced: Vec<ChangeEnvelope> = first.iter().map(|c| policy.scope("erp").fields().apply(c).unwrap().into_owned()).collect();
    g.bench_function("scoped_sqlite_insert_10k_reduced_employees", |b| {
        b.iter_batched(
            || {
                files += 1;
                ScopedSink::new(SqliteSink::open(dir.path().join(format!("scoped-{files}.sqlite3"))).unwrap(), policy.scope("erp"))
            },
            |sink| assert_eq!(rt.block_on(sink.apply(&reduced)).unwrap().applied, reduced.len()),
            BatchSize::PerIteration,
        )
    });
    let sink = SqliteSink::open(dir.path().join("update.sqlite3")).unwrap();
    rt.block_on(sink.apply(&first)).unwrap();
    // What a comparison asks of a system: the digest of everything it holds of a type, read whole or as maintained.
    let digest = |rescan: bool| {
        if rescan {
            rt.block_on(sink.rescan()).unwrap();
        }
        assert_eq!(rt.block_on(sink.digest(DataType::Employee)).unwrap().count, first.len() as u64)
    };
    g.bench_function("sqlite_full_digest_10k_employees", |b| b.iter(|| digest(true)));
    g.bench_function("sqlite_maintained_digest_10k_employees", |b| b.iter(|| digest(false)));
    let mut version = 1;
    g.bench_function("sqlite_update_10k_employees", |b| {
        b.iter_batched(
            || {
                version += 1;
                at_version(&records, version)
            },
            |batch| assert_eq!(rt.block_on(sink.apply(&batch)).unwrap().applied, batch.len()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, merge_200k, ledger_run_1m, sqlite_apply_10k);
criterion_main!(benches);
