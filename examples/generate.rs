//! Writes a deterministic synthetic two-company dataset in the input contract's layout.
//!
//! ```text
//! cargo run --release --example generate -- --out data/seed            # the seed's 10,000 + 10,000
//! cargo run --release --example generate -- --out data/big --employees 200000 --anomalies 0.01
//! cargo run --release --example generate -- --out data/1m --employees 1000000 --next-out data/1m-next
//! ```
use clap::Parser;
use hr_testdata::{Dataset, GenerateOptions};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Generate a synthetic two-company HR dataset")]
struct Args {
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
