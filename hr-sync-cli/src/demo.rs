//! The seed's scenario end to end: generated data (or `--input`) merged,
//! propagated to payroll, orgchart and erp over the embedded Kafka (or
//! `--brokers`), real-time changes, then a 1%-changed delta run.

use hr_demo::console::Console;
use hr_demo::scenario::{run as run_scenario, ScenarioOptions};
use hr_hub::HubConfig;
use std::path::PathBuf;

/// The demo's options.
#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// A real Kafka broker (host:port); default: the embedded mock cluster.
    #[arg(long)]
    brokers: Option<String>,
    /// An input directory laid out as docs/input-contract.md describes, instead of generated data.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where the systems' SQLite files and the hub's ledger go.
    #[arg(long, default_value = "out/demo")]
    data_dir: PathBuf,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// A TOML file with [routes] and [targets.<name>] (see config/hr-sync.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Employees to generate (teams scale with it).
    #[arg(long, default_value_t = 10_000)]
    employees: usize,
}

/// Runs the scenario and prints each system's holdings and the timings.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    hr_demo::console::init_logging();
    let mut config = HubConfig::load(args.config.as_deref())?;
    // Topics of earlier runs on a real broker must not leak into this one's fresh systems.
    config.topic_prefix = format!("{}demo{}.", config.topic_prefix, std::process::id());
    let options = ScenarioOptions { brokers: args.brokers, input: args.input, data_dir: args.data_dir, employees: args.employees, config };
    let report = run_scenario(options, &Console::detect()).await?;

    println!("\n{:<10} {:<13} {:>8} {:>8}  digest = hub", "system", "data type", "records", "applied");
    let mut all_match = true;
    for (system, types) in &report.systems {
        for (t, r) in types {
            all_match &= r.digest_matches;
            println!("{:<10} {:<13} {:>8} {:>8}  {}", system, t.as_str(), r.records, r.applied, if r.digest_matches { "yes" } else { "NO" });
        }
    }
    println!("\ntimings (ms): {}", report.timings_ms.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", "));
    println!("changes sent per periodic run: {:?}", report.changes_sent);
    if let Some(path) = args.report {
        hr_core::write_private(&path, &serde_json::to_vec_pretty(&report)?)?;
        println!("report: {}", path.display());
    }
    if !all_match {
        anyhow::bail!("a system's digest differs from the hub's");
    }
    Ok(())
}
