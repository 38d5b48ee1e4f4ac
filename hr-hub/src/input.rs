//! Reading and merging an input directory without holding up the runtime.

use hr_core::{load_input_dir, merge_with_identities, Identities, ImportError, Mapping, MergeOutcome};
use std::path::PathBuf;
use std::sync::Arc;

/// Reads `input` and merges it, keeping every person's unified id from
/// `identities` (see [`Ledger::identities`](hr_core::Ledger::identities)),
/// with rows dated later set aside as if today were `today` (`None`: each
/// company's day now; see [`SourceData::as_of`](hr_core::SourceData::as_of)).
///
/// The work (seconds and gigabytes for a million employees) runs on the
/// runtime's blocking pool, so a service embedding the hub keeps serving
/// while an export is merged.
pub async fn load_and_merge(
    input: PathBuf,
    mapping: Mapping,
    identities: Arc<Identities>,
    today: Option<chrono::NaiveDate>,
) -> Result<MergeOutcome, ImportError> {
    let merged = tokio::task::spawn_blocking(move || {
        load_input_dir(&input, &mapping).map(|source| {
            merge_with_identities(
                match today {
                    Some(day) => source.as_of(day),
                    None => source,
                },
                &identities,
            )
        })
    })
    .await;
    match merged {
        Ok(merged) => merged,
        // A panic in the merge is a bug, never caused by input (the fuzz tests hold that): it propagates.
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(ImportError::Io { file: "(input directory)".into(), source: std::io::Error::other("the runtime shut down during the merge") }),
    }
}
