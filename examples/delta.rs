//! One periodic run's hub-side work, offline: load and merge the input, plan
//! every data type against the ledger, and record the plan as sent. Prints
//! the timings, the delta sizes and the process's peak memory (RSS), which is
//! how the 1,000,000-employee figures of docs/performance.md are measured:
//!
//! ```text
//! cargo run --release -p hr-sync-cli -- generate --out out/1m --employees 1000000 --next-out out/1m-next
//! cargo run --release --example delta -- --input out/1m --ledger out/1m-ledger.sqlite3       # the full load
//! cargo run --release --example delta -- --input out/1m-next --ledger out/1m-ledger.sqlite3  # the delta run
//! ```
//!
//! It never sends anything: use it to size a deployment, not to sync one.
//!
//! Those figures are measured with `MIMALLOC_PURGE_DELAY=10` (as
//! `scripts/bench.sh` runs it): mimalloc then returns freed memory after
//! 10 ms instead of a second. At 1,000,000 employees that lowers the peak
//! from 1,072-1,193 MiB to 904-911 MiB; a hub merging this much should run
//! with it too.
use clap::Parser;
use hr_core::{load_input_dir, merge, DataType, Ledger, Mapping, PlanOptions};
use std::path::PathBuf;
use std::time::Instant;

// The library leaves the allocator to the program. Ours use mimalloc: a
// merge of 2 x 100k employees takes 0.24 s with it and 0.38 s with the
// system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Merge and plan one periodic run against a ledger, and report time and peak memory")]
struct Args {
    /// The input directory.
    #[arg(long)]
    input: PathBuf,
    /// The ledger file (created if missing).
    #[arg(long)]
    ledger: PathBuf,
    /// Allow more deletions than the ledger's guard.
    #[arg(long)]
    allow_mass_delete: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let mapping = Mapping::for_input_dir(&args.input)?;
    let source = load_input_dir(&args.input, &mapping)?;
    let read_ms = started.elapsed().as_secs_f64() * 1000.0;
    let outcome = merge(source);
    let read_and_merge_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut ledger = Ledger::open(&args.ledger)?;
    let planned = Instant::now();
    let mut report = serde_json::Map::new();
    for t in DataType::ALL {
        let type_started = Instant::now();
        let delta = ledger.plan_state(&outcome.state, t, "hr-hub", &PlanOptions { allow_mass_delete: args.allow_mass_delete, hold: None })?;
        ledger.reserve(t, &delta)?;
        ledger.commit(t, &delta)?;
        report.insert(
            t.as_str().into(),
            serde_json::json!({
                "created": delta.created,
                "updated": delta.updated,
                "deleted": delta.deleted,
                "unchanged": delta.unchanged,
                "plan_and_commit_ms": type_started.elapsed().as_secs_f64() * 1000.0,
            }),
        );
    }
    let plan_ms = planned.elapsed().as_secs_f64() * 1000.0;
    report.insert("read_ms".into(), read_ms.into());
    report.insert("read_and_merge_ms".into(), read_and_merge_ms.into());
    report.insert("plan_and_commit_ms".into(), plan_ms.into());
    report.insert("total_ms".into(), (started.elapsed().as_secs_f64() * 1000.0).into());
    report.insert("peak_rss_mib".into(), peak_rss_mib().into());
    report.insert("quarantined".into(), outcome.report.quarantined.len().into());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The process's high-water mark of resident memory (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
