#!/usr/bin/env bash
# Mutation testing with cargo-mutants: injects bugs into the code that keeps
# the promises of docs/guarantees.md and runs the tests against each; a mutant no test
# catches is a promise without a test. Installs cargo-mutants on first use.
#
#   scripts/mutants.sh core        # hr-core: ledger, digests, holdback, sinks, merge, the HR rules, envelope validation
#   scripts/mutants.sh receiver    # hr-transport-rest: the receiver's refusal paths
#   scripts/mutants.sh client      # hr-transport-rest: the client's handling of what targets answer
#   scripts/mutants.sh repair      # hr-hub: reconcile, foreign versions, repairs and their plan (in-process stores)
#   scripts/mutants.sh subscriber  # hr-transport-kafka: the subscriber's apply-then-commit path (starts the broker)
#   scripts/mutants.sh all
#
# Extra arguments go to cargo mutants (e.g. -f holdback.rs for one file).
# Results: mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
# A surviving mutant gets a test, or an exclusion with its reason in
# .cargo/mutants.toml. Files ignored by git (.kafka/, target/) are not copied:
# the broker's preallocated index files would fill the disk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
what="${1:-core}"
shift || true
mutants() { mkdir -p mutants.out && cargo mutants --gitignore true "$@"; }
core() {
  mutants --package hr-core -f ledger.rs -f digest.rs -f holdback.rs -f sink.rs -f sqlite_sink.rs -f merge.rs -f rules.rs -f envelope.rs -o mutants.out/core "$@"
}
receiver() {
  mutants --package hr-transport-rest -f server.rs -f strict.rs -f idempotency.rs -f token.rs \
    --re 'bound_echoes|check_structure|NoDuplicateKeys|unknown_fields|IgnoredFields|idempotency_key|AnsweredKeys|reserve_body_bytes|cost|allowed_entries|unreadable|list_fields|bounded|refuse|authorized|check_|bearer_matches|presented_token' \
    -o mutants.out/receiver "$@"
}
client() {
  mutants --package hr-transport-rest -f client.rs \
    --re 'send_once|deliver|count_stale|RestPropagator>::targets|get_json|bucket_digests|TargetReader' \
    -o mutants.out/client "$@"
}
repair() {
  mutants --package hr-hub -f hub.rs -f hub/plan.rs \
    --re 'reconcile|find_drift|mark_foreign|repair|receivers_of|send_to|differing_targets|highest_versions|holds_owned_sets|without_owned|expected_digest|expected_entries|classify_repairs|Repairs|describe|count_records|held_records|hold_reasons' \
    --exclude-re 'Hub::send$' \
    -o mutants.out/repair "$@" -- --test reconcile --lib
}
subscriber() {
  scripts/kafka.sh start
  mutants --package hr-transport-kafka -f subscriber.rs --re 'Worker::|next_offsets|take' -o mutants.out/subscriber "$@" -- --test conformance --test real_broker
}
case "$what" in
  core | receiver | client | repair | subscriber) "$what" "$@" ;;
  all) core "$@"; receiver "$@"; client "$@"; repair "$@"; subscriber "$@" ;;
  *) echo "usage: scripts/mutants.sh core|receiver|client|repair|subscriber|all [cargo mutants arguments]" >&2; exit 2 ;;
esac
