//! What a sink reports: outcomes add up over batches, and which errors are
//! worth retrying (a subscriber retries those and dead-letters the rest).
use hr_core::{ApplyOutcome, EnvelopeError, SinkError};

#[test]
fn outcomes_add_up_field_by_field() {
    let mut total = ApplyOutcome { applied: 3, stale: 1, out_of_scope: 0, fields_dropped: 1 };
    total += ApplyOutcome { applied: 4, stale: 2, out_of_scope: 5, fields_dropped: 2 };
    assert_eq!((total.applied, total.stale, total.out_of_scope, total.fields_dropped), (7, 3, 5, 3));
}

#[test]
fn only_an_unavailable_store_is_transient() {
    assert!(SinkError::Unavailable("disk full".into()).is_transient());
    let problem = EnvelopeError::Invalid { event_id: "e-1".into(), data_type: hr_core::DataType::Employee, problem: "version 0".into() };
    let invalid = SinkError::Invalid { index: 0, source: problem };
    assert!(!invalid.is_transient(), "retrying an invalid change cannot help");
}
