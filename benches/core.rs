//! Core costs: merge of 2 x 100,000 employees, ledger delta over 1,000,000
//! records with 1% changed, SQLite sink apply of 10,000 employees.
use criterion::{criterion_group, criterion_main, Criterion};
use hr_core::{load_input_dir, merge, DataType, Ledger, Mapping, MasterData, Sink, SqliteSink};
use hr_sync::generate::{Dataset, GenerateOptions};

fn merge_200k(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = GenerateOptions::scaled(200_000);
    options.teams = 20_000;
    Dataset::generate(&options).write(dir.path()).unwrap();
    let mapping = Mapping::default();
    let mut g = c.benchmark_group("merge");
    g.sample_size(10);
    g.bench_function("load_and_merge_2x100k", |b| b.iter(|| merge(load_input_dir(dir.path(), &mapping).unwrap())));
    g.finish();
}

fn ledger_delta_1m(c: &mut Criterion) {
    let record = |i: u32, rev: u32| MasterData { set: "bench".into(), code: format!("{i:07}"), name: format!("r{rev}"), attributes: Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path().join("ledger.sqlite3")).unwrap();
    let first: Vec<_> = (0..1_000_000).map(|i| record(i, 0)).collect();
    let delta = ledger.plan(DataType::MasterData, first.iter().map(|m| (m.key(), serde_json::value::to_raw_value(m).unwrap())), "bench", false).unwrap();
    ledger.commit(DataType::MasterData, &delta).unwrap();
    let next: Vec<_> = (0..1_000_000).map(|i| record(i, u32::from(i % 100 == 0))).collect();
    let mut g = c.benchmark_group("ledger");
    g.sample_size(10);
    g.bench_function("plan_1m_1pct_changed", |b| {
        b.iter(|| {
            let d = ledger.plan(DataType::MasterData, next.iter().map(|m| (m.key(), serde_json::value::to_raw_value(m).unwrap())), "bench", false).unwrap();
            assert_eq!(d.changes.len(), 10_000);
        })
    });
    g.finish();
}

fn sqlite_apply_10k(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = {
        let dir = tempfile::tempdir().unwrap();
        Dataset::generate(&GenerateOptions::default()).write(dir.path()).unwrap();
        merge(load_input_dir(dir.path(), &Mapping::default()).unwrap())
    };
    let ledger = Ledger::in_memory().unwrap();
    let records: Vec<_> = outcome.state.records(DataType::Employee).map(|(k, v)| (k.to_string(), v.unwrap())).collect();
    let changes = ledger.plan(DataType::Employee, records, "bench", false).unwrap().changes;
    let mut g = c.benchmark_group("sink");
    g.sample_size(10);
    g.bench_function("sqlite_apply_10k_employees", |b| {
        b.iter_batched(
            || SqliteSink::in_memory().unwrap(),
            |sink| rt.block_on(sink.apply(&changes)).unwrap(),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, merge_200k, ledger_delta_1m, sqlite_apply_10k);
criterion_main!(benches);
