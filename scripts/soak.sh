#!/usr/bin/env bash
# The soak with faults at full size: 1,000,000 changes through a real broker
# (started on port 19192 by the test itself) to three subscribers, with a
# broker SIGKILL during a send and a subscriber killed holding a batch; asserts
# every change applied exactly once per system and prints records lost,
# changes applied and duplicates skipped.
# HR_SOAK_CHANGES overrides the size. CI runs the same test at 40,000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
trap 'KAFKA_PORT=19192 KAFKA_CONTROLLER_PORT=19193 bash scripts/kafka.sh stop >/dev/null 2>&1 || true' EXIT
HR_SOAK_CHANGES="${HR_SOAK_CHANGES:-1000000}" cargo test --locked --release -p hr-transport-kafka --test soak -- --nocapture
