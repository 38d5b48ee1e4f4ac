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
    load_and_merge_reading(input, mapping, async { Ok::<_, ImportError>(identities) }, today).await
}

/// [`load_and_merge`] with the identities still to be read (from the
/// ledger, which takes a while at a million people): the input files are
/// read meanwhile, and the merge starts once both are there.
pub async fn load_and_merge_reading<E: From<ImportError>>(
    input: PathBuf,
    mapping: Mapping,
    identities: impl std::future::Future<Output = Result<Arc<Identities>, E>>,
    today: Option<chrono::NaiveDate>,
) -> Result<MergeOutcome, E> {
    let reading = on_blocking_pool(move || load_input_dir(&input, &mapping));
    // Polled first, the reading is on the blocking pool before the identities are asked for.
    let (source, identities) = futures::join!(reading, identities);
    let (source, identities) = (source??, identities?);
    let merged = on_blocking_pool(move || {
        let source = match today {
            Some(day) => source.as_of(day),
            None => source,
        };
        merge_with_identities(source, &identities)
    });
    Ok(merged.await?)
}

/// Runs `work` on the runtime's blocking pool.
async fn on_blocking_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ImportError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        // A panic in the merge is a bug, never caused by input (the fuzz tests hold that): it propagates.
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(ImportError::Io { file: "(input directory)".into(), source: std::io::Error::other("the runtime shut down during the merge") }),
    }
}
