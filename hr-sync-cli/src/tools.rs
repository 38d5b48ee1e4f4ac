//! The small subcommands: `generate` a synthetic dataset, `merge` an
//! export into a report, write the `schemas` of the wire contract.

use hr_core::{load_input_dir, merge, Mapping};
use hr_testdata::{Dataset, GenerateOptions};
use std::path::PathBuf;

/// `hr-sync generate`.
#[derive(clap::Args)]
pub(crate) struct GenerateArgs {
    /// Output directory (created).
    #[arg(long)]
    out: PathBuf,
    /// Employees over both companies.
    #[arg(long, default_value_t = 10_000)]
    employees: usize,
    /// Teams over both companies (default: as many as employees).
    #[arg(long)]
    teams: Option<usize>,
    /// `md.category` master data rows.
    #[arg(long, default_value_t = 100)]
    master_data: usize,
    /// Share of planted anomalies (0..1).
    #[arg(long, default_value_t = 0.0)]
    anomalies: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Also write the next periodic run's input here: `--changed` of the
    /// employees changed and `--departures` of them gone.
    #[arg(long)]
    next_out: Option<PathBuf>,
    /// Share of employees changed in the next run.
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    /// Employees gone in the next run.
    #[arg(long, default_value_t = 20)]
    departures: usize,
}

/// Writes a deterministic synthetic two-company dataset in the input contract's layout.
pub(crate) fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let mut options = GenerateOptions::scaled(args.employees);
    options.teams = args.teams.unwrap_or(args.employees);
    options.master_data = args.master_data;
    options.anomaly_share = args.anomalies;
    options.seed = args.seed;
    let mut data = Dataset::generate(&options);
    data.write(&args.out)?;
    eprintln!("wrote {} employees, {} teams to {}", options.employees, options.teams, args.out.display());
    if let Some(next) = &args.next_out {
        data.evolve(args.changed, args.departures);
        data.write(next)?;
        eprintln!("wrote the next run ({} changed, {} departures) to {}", args.changed, args.departures, next.display());
    }
    Ok(())
}

/// `hr-sync merge`.
#[derive(clap::Args)]
pub(crate) struct MergeArgs {
    /// Input directory laid out as docs/input-contract.md describes.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the JSON report.
    #[arg(long)]
    report: PathBuf,
}

/// Merges two companies' exports and writes the merge report: exits 0
/// even when records were quarantined (they are in the report), non-zero
/// only when the input is unusable.
pub(crate) fn merge_report(args: MergeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mapping = Mapping::for_input_dir(&args.input)?;
    let source = load_input_dir(&args.input, &mapping)?;
    let outcome = merge(source);
    let report = &outcome.report;
    hr_core::write_private(&args.report, &serde_json::to_vec_pretty(report)?)
        .map_err(|e| anyhow::anyhow!("cannot write report {}: {e}", args.report.display()))?;
    eprintln!(
        "merged in {:.0} ms: {:?}; {} matched persons, {} quarantined, {} conflicts, {} warnings; report: {}",
        started.elapsed().as_secs_f64() * 1000.0,
        report.counts,
        report.matched_persons,
        report.quarantined.len(),
        report.conflicts.len(),
        report.warnings.len(),
        args.report.display()
    );
    Ok(())
}

/// `hr-sync schemas`.
#[derive(clap::Args)]
pub(crate) struct SchemasArgs {
    /// The directory to write them to (created if missing).
    #[arg(long, default_value = "schemas")]
    out: PathBuf,
}

/// Writes the JSON Schema (draft 2020-12) of the change envelope and of
/// every record type, for target systems written in other languages; the
/// repository's `schemas/` is this output, and `tests/schemas.rs` fails
/// when it is stale.
pub(crate) fn schemas(args: SchemasArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    for (name, schema) in hr_core::schema_files() {
        let path = args.out.join(&name);
        std::fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
