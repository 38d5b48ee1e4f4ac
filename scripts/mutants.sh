#!/usr/bin/env bash
# Mutation testing of the core's promise-keeping code with cargo-mutants:
# injects bugs into the files below and runs hr-core's tests against each;
# a mutant that no test catches is a promise without a test. Installs
# cargo-mutants on first use. Extra arguments go to cargo mutants (e.g. -j 2).
#
#   scripts/mutants.sh                 # the files below (about 230 mutants: 1-2 hours on 2 cores)
#   scripts/mutants.sh -f holdback.rs  # one file
#
# Results: mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
# A surviving mutant gets a test, or an exclusion with its reason in
# .cargo/mutants.toml (none is needed today).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
files=(-f ledger.rs -f digest.rs -f holdback.rs -f sink.rs -f sqlite_sink.rs)
if [[ " $* " == *" -f "* ]]; then files=(); fi
exec cargo mutants --package hr-core "${files[@]}" "$@"
