//! A sink adapter that counts what a system applies, by data type and by
//! the way it came (REST or Kafka), for the metrics the system exports.

use async_trait::async_trait;
use hr_core::{ApplyOutcome, ChangeEnvelope, DataType, Digest, DigestEntry, KeptLetter, Sink, SinkError};
use std::time::Instant;

/// Counts every batch `inner` applies: `hr_changes_applied_total`,
/// `hr_changes_stale_total`, `hr_changes_out_of_scope_total`,
/// `hr_changes_fields_dropped_total`,
/// `hr_changes_invalid_total` and the `hr_apply_seconds` histogram, each
/// labelled with `data_type` (`mixed` for a batch of several) and `transport`.
pub(crate) struct MeteredSink<S> {
    inner: S,
    transport: &'static str,
}

impl<S: Sink> MeteredSink<S> {
    pub(crate) fn new(inner: S, transport: &'static str) -> Self {
        MeteredSink { inner, transport }
    }
}

/// The data type label of a batch.
fn data_type_of(batch: &[ChangeEnvelope]) -> &'static str {
    match batch.first() {
        Some(first) if batch.iter().all(|c| c.data_type == first.data_type) => first.data_type.as_str(),
        Some(_) => "mixed",
        None => "none",
    }
}

#[async_trait]
impl<S: Sink> Sink for MeteredSink<S> {
    async fn apply(&self, batch: &[ChangeEnvelope]) -> Result<ApplyOutcome, SinkError> {
        let started = Instant::now();
        let result = self.inner.apply(batch).await;
        let labels = [("data_type", data_type_of(batch)), ("transport", self.transport)];
        match &result {
            Ok(outcome) => {
                metrics::counter!("hr_changes_applied_total", &labels).increment(outcome.applied as u64);
                metrics::counter!("hr_changes_stale_total", &labels).increment(outcome.stale as u64);
                metrics::counter!("hr_changes_out_of_scope_total", &labels).increment(outcome.out_of_scope as u64);
                metrics::counter!("hr_changes_fields_dropped_total", &labels).increment(outcome.fields_dropped as u64);
                metrics::histogram!("hr_apply_seconds", &labels).record(started.elapsed().as_secs_f64());
            }
            Err(SinkError::Invalid { .. }) => metrics::counter!("hr_changes_invalid_total", &labels).increment(1),
            Err(_) => metrics::counter!("hr_store_unavailable_total", "transport" => self.transport).increment(1),
        }
        result
    }

    async fn entries(&self, data_type: DataType) -> Result<Vec<DigestEntry>, SinkError> {
        self.inner.entries(data_type).await
    }

    async fn digest(&self, data_type: DataType) -> Result<Digest, SinkError> {
        self.inner.digest(data_type).await
    }

    async fn bucket_digests(&self, data_type: DataType) -> Result<Vec<Digest>, SinkError> {
        self.inner.bucket_digests(data_type).await
    }

    async fn rescan(&self) -> Result<(), SinkError> {
        self.inner.rescan().await
    }

    async fn keep_letter(&self, letter: &KeptLetter) -> Result<(), SinkError> {
        self.inner.keep_letter(letter).await
    }
}
