//! Benchmark: a directory provisioned through the hub over SCIM 2.0. A
//! synthetic export is merged, planned against a fresh ledger and sent to a
//! real SCIM provider (employees as Users, teams as Groups); then 1% of the
//! people change and the next run sends only that; then the directory is
//! read back and compared, with SCIM Bulk requests and without. Each
//! repetition uses a tenant of its own.
//!
//! ```text
//! bash scripts/scim.sh start
//! HR_SCIM_URL=http://127.0.0.1:18080 cargo run --release --example bench_scim -- --employees 10000 --runs 3
//! ```
use clap::Parser;
use hr_core::{Identities, Ledger, Mapping};
use hr_sync::hr_transport_scim::ScimPropagator;
use hr_sync::{load_and_merge, Hub, HubConfig};
use hr_testdata::{Dataset, GenerateOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a directory receives.
const DIRECTORY_TYPES: [hr_core::DataType; 2] = [hr_core::DataType::OrgUnit, hr_core::DataType::Employee];

#[derive(Parser)]
#[command(about = "Time a first run, a 1%-changed run and a read-back of a SCIM directory through the hub")]
struct Args {
    /// Employees in the export.
    #[arg(long, default_value_t = 10_000)]
    employees: usize,
    /// Teams (Groups); default a tenth of the employees.
    #[arg(long)]
    teams: Option<usize>,
    /// Repetitions, each in a fresh tenant.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// SCIM Bulk requests: `on`, `off`, or `both` (alternating runs, each mode in a tenant of its own).
    #[arg(long, default_value = "both", value_parser = ["on", "off", "both"])]
    bulk: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = std::env::var("HR_SCIM_URL").map_err(|_| anyhow::anyhow!("HR_SCIM_URL: start the provider with `bash scripts/scim.sh start`"))?;
    if std::env::var("HR_SCIM_TOKEN").is_err() {
        std::env::set_var("HR_SCIM_TOKEN", "hr-sync-test-token-for-the-scim-provider-0001");
    }
    let teams = args.teams.unwrap_or((args.employees / 10).max(1));
    let modes: &[bool] = match args.bulk.as_str() {
        "on" => &[true],
        "off" => &[false],
        _ => &[true, false],
    };
    let mut samples: Vec<Vec<[Duration; 3]>> = vec![vec![]; modes.len()];
    let mut sent = [0u64; 2];
    // Alternating, so both modes see the machine alike.
    for run in 0..args.runs {
        for (m, bulk) in modes.iter().enumerate() {
            let (took, changes) = run_once(&url, args.employees, teams, *bulk).await?;
            println!(
                "run {} (bulk {}): first {} changes in {:.1} s, 1% delta {} changes in {:.2} s, read back in {:.2} s",
                run + 1,
                if *bulk { "on" } else { "off" },
                changes[0],
                took[0].as_secs_f64(),
                changes[1],
                took[1].as_secs_f64(),
                took[2].as_secs_f64()
            );
            sent = changes;
            samples[m].push(took);
        }
    }
    for (m, bulk) in modes.iter().enumerate() {
        let median = |i: usize| {
            let mut v: Vec<Duration> = samples[m].iter().map(|s| s[i]).collect();
            v.sort();
            v[v.len() / 2]
        };
        let (first, delta, read) = (median(0), median(1), median(2));
        println!(
            "bulk {}: median of {} runs, {} employees + {teams} teams: first run {:.1} s ({:.0} changes/s), 1% delta {:.2} s ({:.0} changes/s), read back and compare {:.2} s",
            if *bulk { "on" } else { "off" },
            samples[m].len(),
            args.employees,
            first.as_secs_f64(),
            sent[0] as f64 / first.as_secs_f64(),
            delta.as_secs_f64(),
            sent[1] as f64 / delta.as_secs_f64(),
            read.as_secs_f64()
        );
    }
    Ok(())
}

/// One first run, one 1% delta and one read-back into a tenant of its own;
/// their durations, and the changes the two runs sent.
async fn run_once(url: &str, employees: usize, teams: usize, bulk: bool) -> anyhow::Result<([Duration; 3], [u64; 2])> {
    let dir = tempfile::tempdir()?;
    let tenant = format!("{}/bench{:x}", url.trim_end_matches('/'), rand::random::<u64>());
    let config = HubConfig::from_toml_str(
        &format!(
            "[routes]\nemployee = \"scim\"\norg_unit = \"scim\"\n\n[targets.directory]\ndata_types = [\"employee\", \"org_unit\"]\ntransport = \"scim\"\nurl = \"{tenant}\"\ntoken_env = \"HR_SCIM_TOKEN\"\nomit.employee = [\"phone\", \"birth_date\"]\nbulk = {bulk}\n"
        ),
        "bench.toml",
    )?;
    let ledger = Ledger::open(dir.path().join("hub.sqlite3"))?;
    let scim = Arc::new(ScimPropagator::new(config.scim_config(dir.path().join(hr_sync::SCIM_ID_STORE))?.expect("a directory"))?);
    let mut hub = Hub::with_transports(&config, ledger, [("scim", scim.clone() as Arc<dyn hr_core::Propagator>)])?.with_reader(scim.clone());
    hub.allow_mass_delete(true);

    let mut data = Dataset::generate(&GenerateOptions { teams, ..GenerateOptions::scaled(employees) });
    let input = dir.path().join("input");
    data.write(&input)?;
    let state = load_and_merge(input.clone(), Mapping::default(), Arc::new(Identities::default()), None).await?.state;
    let started = Instant::now();
    let first = hub.sync_types(&state, &DIRECTORY_TYPES, &Default::default()).await?;
    let first_took = started.elapsed();

    data.evolve(0.01, 0);
    data.write(&input)?;
    let state = load_and_merge(input, Mapping::default(), Arc::new(Identities::default()), None).await?.state;
    let started = Instant::now();
    let delta = hub.sync_types(&state, &DIRECTORY_TYPES, &Default::default()).await?;
    let delta_took = started.elapsed();

    let started = Instant::now();
    let found = hub.reconcile(&config).await?;
    let read_took = started.elapsed();
    anyhow::ensure!(found["directory"].values().all(|r| r.digest_matches), "the directory differs from the hub: {found:?}");
    Ok(([first_took, delta_took, read_took], [first.sent, delta.sent]))
}
