#!/usr/bin/env bash
# Where one `clab run` spends its time, phase by phase (issue 20): runs clab N times with
# CLAB_PHASES=1 and prints the median of each phase mark (ms since `main` started) and of each
# summed total (keys, lookups, commands, storing).
#
#   bash bench/phases.sh CLAB WORKSPACE noop|leaf|mid [RUNS]
#
# noop: nothing changed (after one quiet second, so the no-op snapshot is written);
# leaf: LEAF_INPUT (an input of a task nothing depends on) appended to before each run;
# mid: MID_INPUT (a mid-layer task's input) appended to before each run.
set -euo pipefail
clab=$1 ws=$2 mode=$3 runs=${4:-20}
export CLAB_NO_PROGRESS=1
"$clab" -C "$ws" -q run all -j2 >/dev/null 2>&1
case $mode in
    noop) sleep 1.2; "$clab" -C "$ws" -q run all -j2 >/dev/null 2>&1 ;;
    leaf | mid) file="$ws/$(tr '[:lower:]' '[:upper:]' <<<"$mode")_INPUT"; input="$ws/$(cat "$file")" ;;
esac
out=$(mktemp)
for ((i = 0; i < runs; i++)); do
    [ "$mode" = noop ] || date +%s%N >>"$input"
    CLAB_PHASES=1 "$clab" -C "$ws" -q run all -j2 2>>"$out" >/dev/null
done
python3 - "$out" "$runs" <<'PY'
import sys, statistics, collections
marks, totals, counts = collections.OrderedDict(), collections.OrderedDict(), {}
for line in open(sys.argv[1]):
    parts = line.split()
    if parts[0] == "phase":
        marks.setdefault(parts[1], []).append(float(parts[2]))
    elif parts[0] == "total":
        totals.setdefault(parts[1], []).append(float(parts[2]))
        counts[parts[1]] = parts[3]
runs = int(sys.argv[2])
for name, values in marks.items():
    note = "" if len(values) == runs else f" (in {len(values)} of {runs} runs)"
    print(f"{name:20s} {statistics.median(values):8.2f} ms{note}")
for name, values in totals.items():
    print(f"total {name:14s} {statistics.median(values):8.2f} ms over {counts[name]} calls")
PY
rm -f "$out"
