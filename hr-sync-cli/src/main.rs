//! `hr-sync`, the program. One binary with a subcommand per job:
//!
//! ```text
//! cargo install --path hr-sync-cli
//! hr-sync demo                                        # the seed's scenario on the embedded Kafka
//! hr-sync system --name payroll --listen 127.0.0.1:8081 --config hr-sync.toml
//! hr-sync hub --input out/input --config hub.toml     # merge, propagate, compare
//! hr-sync dead-letters list --data-type master_data --config hub.toml
//! hr-sync generate --out out/input --next-out out/input-next    # a synthetic export
//! hr-sync merge --input out/input --report out/merge.json       # the merge report alone
//! hr-sync schemas --out schemas                                 # the wire contract
//! ```
//!
//! It depends only on the libraries and what a program needs (argument
//! parsing, the allocator), not on the test and benchmark tooling the
//! workspace's examples build with, so a first build compiles less.

use clap::{Parser, Subcommand};

mod dead_letters;
mod demo;
mod hub;
mod system;
mod tools;

// The libraries leave the allocator to the program. Ours uses mimalloc: a
// merge of 2 x 100k employees takes 0.24 s with it and 0.38 s with the
// system allocator (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "hr-sync", version, about = "Merge two companies' HR data and propagate every change to the systems that use it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The seed's scenario end to end: merge, propagate to payroll, orgchart
    /// and erp, real-time changes, a 1% delta run; exits non-zero if a
    /// system's digest differs from the hub's.
    ///
    /// Example: `hr-sync demo --brokers 127.0.0.1:9092 --report out/demo.json`
    Demo(demo::DemoArgs),
    /// The hub: merge the input, plan deltas against its ledger, propagate
    /// to every target, wait until each applied, compare and repair;
    /// `--watch` repeats, `--listen` serves the real-time API.
    ///
    /// Example: `HR_TOKEN_PAYROLL=$T hr-sync hub --input out/input --config hub.toml --brokers 127.0.0.1:9092`
    Hub(hub::Args),
    /// One target system: a SQLite store, the REST receiver in front of it
    /// and a Kafka subscriber feeding it, until Ctrl-C or SIGTERM.
    ///
    /// Example: `HR_SYSTEM_TOKEN=$T hr-sync system --name payroll --listen 127.0.0.1:8081 --config hr-sync.toml`
    System(system::Args),
    /// List a data type's dead letters, replay them once the cause is
    /// fixed, or list those a system kept in its store.
    ///
    /// Example: `hr-sync dead-letters list --data-type master_data --config hub.toml`
    DeadLetters(dead_letters::Args),
    /// Write a deterministic synthetic two-company dataset in the input
    /// contract's layout, and optionally the next periodic run's.
    ///
    /// Example: `hr-sync generate --out out/input --employees 10000 --next-out out/input-next`
    Generate(tools::GenerateArgs),
    /// Merge two companies' exports and write the merge report (counts,
    /// quarantine, possible duplicates); sends nothing.
    ///
    /// Example: `hr-sync merge --input out/input --report out/merge.json`
    Merge(tools::MergeArgs),
    /// Write the JSON Schemas of the change envelope and every record type,
    /// for target systems in other languages.
    ///
    /// Example: `hr-sync schemas --out schemas`
    Schemas(tools::SchemasArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args).await,
        Command::Hub(args) => hub::run(args).await,
        Command::System(args) => system::run(args).await,
        Command::DeadLetters(args) => dead_letters::run(args).await,
        Command::Generate(args) => tools::generate(args),
        Command::Merge(args) => tools::merge_report(args),
        Command::Schemas(args) => tools::schemas(args),
    }
}
