//! Pattern: **generate the wire contract**. Writes the JSON Schema
//! (draft 2020-12) of the change envelope and of every record type into a
//! directory, for target systems written in other languages: a Kafka
//! consumer validates each envelope it reads against
//! `envelope.schema.json`. The files in the repository's `schemas/` are this
//! example's output, and `tests/schemas.rs` fails when they are stale.
//!
//! ```text
//! cargo run --example schemas -- --out schemas
//! ```

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Write the JSON Schemas of the change envelope and the record types")]
struct Args {
    /// The directory to write them to (created if missing).
    #[arg(long, default_value = "schemas")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    for (name, schema) in hr_core::schema_files() {
        let path = args.out.join(&name);
        std::fs::write(&path, serde_json::to_string_pretty(&schema)? + "\n")?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
