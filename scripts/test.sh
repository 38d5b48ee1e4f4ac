#!/usr/bin/env bash
# Runs every test: checks formatting (rustfmt.toml), lints (clippy, warnings
# are errors) and the API docs (broken links are errors), starts the real Kafka broker
# and the real SCIM provider (fetching each on first use), installs Debian's headless
# Chromium for the console test, runs the workspace's unit,
# integration and doc tests against them, stops them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A test run from a fresh clone gains nothing from incremental compilation, whose
# caches more than double the target directory (about 6 GB without them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
bash scripts/kafka.sh start
bash scripts/scim.sh start
bash scripts/browser.sh install
trap 'bash scripts/kafka.sh stop || true; bash scripts/scim.sh stop || true; for p in 19092 19192 19292 19392 19492; do KAFKA_PORT=$p KAFKA_CONTROLLER_PORT=$((p + 1)) bash scripts/kafka.sh stop >/dev/null 2>&1 || true; done' EXIT
export HR_KAFKA_BROKERS="${HR_KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}"
export HR_SCIM_URL="${HR_SCIM_URL:-http://127.0.0.1:${SCIM_PORT:-18080}}"
export HR_SCIM_TOKEN="${HR_SCIM_TOKEN:-${SCIM_TOKEN:-hr-sync-test-token-for-the-scim-provider-0001}}"
cargo test --workspace --locked "$@"
