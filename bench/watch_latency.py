#!/usr/bin/env python3
"""Latency of `clab watch` from a file write to the task's start, beside watchexec.

For each tool: start it on a temp project whose one task appends `date +%s%N` to a file, wait
for the first run, then save the input 20 times (a different content each time, 400 ms apart)
and measure, for each save, the time from just before the write to the timestamp the task
wrote. Both tools use the same debounce (50 ms, watchexec's default and clab's). Prints the
median, min and max per tool, and the ratio of the medians.

Usage: bench/watch_latency.py [--clab target/release/clab] [--watchexec watchexec] [--saves 20]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = """task "stamp" {
    run "date +%s%N >> ../starts"
    cwd "src"
    inputs "src/*.txt"
}
task "default" { deps "stamp" }
"""


def lines(path):
    try:
        with open(path) as f:
            return [line for line in f.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def wait_lines(path, count, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lines(path)
        if len(found) >= count:
            return found
        time.sleep(0.002)
    raise SystemExit(f"timed out waiting for {count} lines in {path}")


def measure(name, command, saves, debounce_ms):
    root = tempfile.mkdtemp(prefix=f"watch-bench-{name}-")
    try:
        os.makedirs(os.path.join(root, "src"))
        with open(os.path.join(root, "tasks.kdl"), "w") as f:
            f.write(TASKS)
        with open(os.path.join(root, "src", "a.txt"), "w") as f:
            f.write("0\n")
        starts = os.path.join(root, "starts")
        env = dict(os.environ, CLAB_NO_PROGRESS="1", NO_COLOR="1")
        child = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_lines(starts, 1)
            time.sleep(0.5)
            latencies = []
            for i in range(1, saves + 1):
                before = len(lines(starts))
                t0 = time.time_ns()
                with open(os.path.join(root, "src", "a.txt"), "w") as f:
                    f.write(f"{i}\n")
                found = wait_lines(starts, before + 1)
                latencies.append((int(found[before]) - t0) / 1e6)
                time.sleep(0.4)
        finally:
            child.send_signal(2)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        return latencies
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(name, latencies):
    print(
        f"{name:10} median {statistics.median(latencies):6.1f} ms   "
        f"min {min(latencies):6.1f} ms   max {max(latencies):6.1f} ms   (n={len(latencies)})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clab", default="target/release/clab")
    parser.add_argument("--watchexec", default=shutil.which("watchexec") or "")
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--debounce-ms", type=int, default=50)
    args = parser.parse_args()
    clab = os.path.abspath(args.clab)
    debounce = f"{args.debounce_ms}ms"

    results = {}
    results["clab"] = measure(
        "clab", [clab, "watch", "--debounce", debounce], args.saves, args.debounce_ms
    )
    report("clab", results["clab"])
    if args.watchexec:
        results["watchexec"] = measure(
            "watchexec",
            [
                args.watchexec,
                "--debounce",
                debounce,
                "--watch",
                "src",
                "--no-vcs-ignore",
                "--shell=none",
                "--",
                "sh",
                "-c",
                "cd src && date +%s%N >> ../starts",
            ],
            args.saves,
            args.debounce_ms,
        )
        report("watchexec", results["watchexec"])
        ratio = statistics.median(results["clab"]) / statistics.median(results["watchexec"])
        print(f"ratio clab/watchexec (medians): {ratio:.2f}")
    else:
        print("watchexec not found: pass --watchexec PATH", file=sys.stderr)


if __name__ == "__main__":
    main()
