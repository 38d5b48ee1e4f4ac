#!/usr/bin/env python3
"""Gathers what scripts/bench.sh measured into one JSON document, so that a
later run can be compared with this one row by row.

    scripts/bench_summary.py OUT.json

Reads criterion's estimates (target/criterion/*/new/; with BENCH_STARTED,
in seconds since the epoch, only those written since), the latency
percentiles (target/bench-latency.json) and the 1M periodic runs
(target/bench-1m-full.json, target/bench-1m.json). Every time is in
milliseconds; each criterion row carries its median with the 95% confidence
interval and its mean. Writes OUT.json and prints the rows."""

import datetime
import glob
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target")


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def criterion_rows():
    rows = {}
    # Only what this run measured: target/criterion keeps the estimates of
    # benchmarks since renamed or removed. scripts/bench.sh sets BENCH_STARTED.
    started = float(os.environ.get("BENCH_STARTED", "0"))
    for estimates_path in sorted(glob.glob(os.path.join(TARGET, "criterion", "**", "new", "estimates.json"), recursive=True)):
        if os.path.getmtime(estimates_path) < started:
            continue
        new = os.path.dirname(estimates_path)
        estimates, benchmark = read_json(estimates_path), read_json(os.path.join(new, "benchmark.json"))
        if not estimates or not benchmark:
            continue
        median = estimates["median"]
        ms = lambda ns: round(ns / 1e6, 4)
        rows[benchmark["full_id"]] = {
            "median_ms": ms(median["point_estimate"]),
            "median_ci95_ms": [ms(median["confidence_interval"]["lower_bound"]), ms(median["confidence_interval"]["upper_bound"])],
            "mean_ms": ms(estimates["mean"]["point_estimate"]),
        }
    return rows


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kib = 0
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kib / 1048576), "cpu": model, "system": platform.platform()}


def commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    summary = {
        "commit": commit(),
        "measured_at": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine(),
        "command": "bash scripts/bench.sh",
        "criterion": criterion_rows(),
        "latency": read_json(os.path.join(TARGET, "bench-latency.json")) or {},
        "periodic_1m": {
            "full_load": read_json(os.path.join(TARGET, "bench-1m-full.json")),
            "delta_run": read_json(os.path.join(TARGET, "bench-1m.json")),
        },
    }
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    for name, row in summary["criterion"].items():
        low, high = row["median_ci95_ms"]
        print(f"{name}: median {row['median_ms']} ms (95% CI {low}-{high})")
    for name, row in summary["latency"].items():
        print(f"{name}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms over {row['samples']}")
    print(f"summary: {sys.argv[1]}")


if __name__ == "__main__":
    main()
