#!/usr/bin/env bash
# Runs the benchmark suite against the real broker and prints the figures
# docs/performance.md quotes:
#   - criterion: benches/core.rs (merge, ledger delta, SQLite apply) and
#     benches/transports.rs (seed scenario per transport and the naive pilot,
#     real-time p50/p99, producer vs raw rdkafka);
#   - the 1,000,000-employee periodic run (examples/delta.rs): time and peak RSS.
# Criterion's reports land in target/criterion/, percentiles in
# target/bench-latency.json, the 1M figures in target/bench-1m-full.json and
# target/bench-1m.json; all of them are gathered into docs/bench-summary.json
# (scripts/bench_summary.py), beside docs/performance.md's tables, so that a
# later run compares row by row.
# BENCH_1M_EMPLOYEES overrides the size of the last step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/kafka.sh start
trap 'bash scripts/kafka.sh stop || true' EXIT
export HR_KAFKA_BROKERS="${HR_KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}"

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
export BENCH_STARTED="$(date +%s)"
cargo bench --locked --bench core --bench transports "$@"

n="${BENCH_1M_EMPLOYEES:-1000000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"; bash scripts/kafka.sh stop || true' EXIT
# Two builds: `--example` limits a build to the example, so the program needs its own.
cargo build --locked --release -p hr-sync-cli
cargo build --locked --release --example delta -p hr-sync
echo "== periodic run at $n employees"
# mimalloc returns freed memory after 10 ms instead of its default second:
# a run this size frees the records it read while it builds the merged state,
# and keeping them a second raises the peak by 160-290 MiB (and, on the
# measuring VM, costs time too). docs/performance.md.
export MIMALLOC_PURGE_DELAY=10
target/release/hr-sync generate --out "$work/base" --employees "$n" --next-out "$work/next"
echo "-- full load (empty ledger)"
target/release/examples/delta --input "$work/base" --ledger "$work/ledger.sqlite3" | tee target/bench-1m-full.json
echo "-- delta run (1% changed, 20 departures)"
target/release/examples/delta --input "$work/next" --ledger "$work/ledger.sqlite3" | tee target/bench-1m.json
python3 scripts/bench_summary.py docs/bench-summary.json
