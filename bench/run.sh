#!/usr/bin/env bash
# clab's benchmark suite: clab beside make, ninja and just. Regenerates docs/benchmarks.md.
#
#   bash bench/run.sh            # everything (about 10 minutes on a 2-core machine)
#   RUNS=10 bash bench/run.sh    # more timing runs per command (default 5)
#   BENCH_DIR=/some/dir ...      # where workspaces go (default: a fresh mktemp -d, deleted at exit)
#   KEEP=1 ...                   # keep the workspaces
#   CASES="trivial sched" ...    # a subset: any of big small trivial sched hash
#
# Needs: cargo, python3, hyperfine, make, ninja, b3sum, GNU time (/usr/bin/time), just
# (`cargo install just`). The numbers land in bench/results/*.json and docs/benchmarks.md.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
RUNS=${RUNS:-5}
COLD_RUNS=${COLD_RUNS:-3}
CASES=${CASES:-"big small trivial sched hash"}
results="$repo/bench/results"
mkdir -p "$results"

for tool in hyperfine make ninja b3sum python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing" >&2; exit 2; }
done
JUST=$(command -v just || echo "$HOME/.cargo/bin/just")
[ -x "$JUST" ] || { echo "bench/run.sh: just is missing (cargo install just)" >&2; exit 2; }

if [ -z "${BENCH_DIR:-}" ]; then
    BENCH_DIR=$(mktemp -d /tmp/clab-bench.XXXXXX)
    [ -n "${KEEP:-}" ] || trap 'rm -rf "$BENCH_DIR"' EXIT
fi
mkdir -p "$BENCH_DIR"
echo "workspaces in $BENCH_DIR"

echo "== building clab (release)"
cargo build --release -q -p clab
# Timed as installed: `cargo install` copies the binary, as just's and ninja's were copied
# into place. The linker's output sits in the page cache in small pages, and starting it cost
# ~26 more page faults than starting a copy (297 against 271 for `clab run` of `echo hi`;
# ~0.1-0.4 ms on this machine, `perf stat`).
CLAB="$BENCH_DIR/clab"
install -m 755 "$repo/target/release/clab" "$CLAB"
export CLAB_NO_PROGRESS=1

hf() { # hyperfine with the suite's defaults; $1 = result name, then hyperfine arguments
    local name=$1
    shift
    # How busy the machine was (other jobs share it): the load average before and after.
    echo "before $(cat /proc/loadavg)" >"$results/$name.load"
    # Record the exact commands (hyperfine's JSON only keeps the -n names).
    local args=("$@") i
    : >"$results/$name.cmds"
    for ((i = 0; i < ${#args[@]}; i++)); do
        case ${args[i]} in
            -n) printf '%s\t%s\n' "${args[i + 1]}" "${args[i + 2]}" >>"$results/$name.cmds"; i=$((i + 2)) ;;
            --prepare) printf 'prepare\t%s\n' "${args[i + 1]}" >>"$results/$name.cmds"; i=$((i + 1)) ;;
        esac
    done
    hyperfine --style basic --export-json "$results/$name.json" "$@"
    echo "after $(cat /proc/loadavg)" >>"$results/$name.load"
}

# Peak RSS in KiB of one command run in a directory: rss NAME DIR CMD...
rss() {
    local name=$1 dir=$2
    shift 2
    (cd "$dir" && /usr/bin/time -v "$@" >/dev/null 2>"$results/$name.time") || true
    grep 'Maximum resident set size' "$results/$name.time" | awk '{print $NF}' >"$results/$name.rss"
}

start=$(date +%s)
{
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem=$(free -g | awk '/^Mem:/{print $2}') GiB"
    echo "kernel=$(uname -r)"
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- engine cli || echo '+dirty')"
    echo "clab=$($CLAB --version 2>/dev/null || echo '?')"
    echo "make=$(make --version | head -1)"
    echo "ninja=$(ninja --version)"
    echo "just=$($JUST --version)"
    echo "b3sum=$(b3sum --version)"
    echo "hyperfine=$(hyperfine --version)"
    echo "runs=$RUNS"
} >"$results/machine.txt"

# ---------------------------------------------------------------------------------------
# a. 2,000 tasks x 20 inputs of 4 KiB, 10 layers: cold, no-op, one input changed.
if [[ " $CASES " == *" big "* ]]; then
    echo "== a. 2,000 tasks x 20 files x 4 KiB, 10 layers"
    big="$BENCH_DIR/big"
    if [ ! -d "$big/clab" ]; then
        python3 bench/gen.py --out "$big/clab" --tasks 2000 --files 20 --size 4096 --layers 10
        cp -a "$big/clab" "$big/make"
        cp -a "$big/clab" "$big/ninja"
    fi
    mid=$(cat "$big/clab/MID_INPUT")
    clab_run="$CLAB -C $big/clab -q run all -j2"
    make_run="make -s -C $big/make -j2 all"
    ninja_run="ninja -C $big/ninja -j2"

    # Cold means no build state; every tool starts with its sources in the page cache (read
    # once in the prepare step), as after a checkout: this VM drops the page cache now and
    # then, and a run that happened to read its 160 MB of inputs from disk measured the disk.
    warm() { echo "find $big/$1/src -type f -exec cat {} + >/dev/null"; }
    hf big-cold --runs "$COLD_RUNS" \
        --prepare "rm -rf $big/clab/out $big/clab/.clab && mkdir $big/clab/out && $(warm clab)" \
        -n clab "$clab_run" \
        --prepare "rm -rf $big/make/out && mkdir $big/make/out && $(warm make)" -n make "$make_run" \
        --prepare "rm -rf $big/ninja/out $big/ninja/.ninja_log $big/ninja/.ninja_deps && mkdir $big/ninja/out && $(warm ninja)" \
        -n ninja "$ninja_run"

    # Let every tool finish a build, and make sure input mtimes are older than the stat
    # cache's racy window, so the no-op runs measure the steady state.
    $clab_run >/dev/null
    $make_run >/dev/null
    $ninja_run >/dev/null
    sleep 2
    hf big-noop --warmup 2 --runs $((RUNS * 2)) \
        -n clab "$clab_run" -n make "$make_run" -n ninja "$ninja_run"

    # One input of a mid-layer task changed: it and its downstream cone rerun (the same
    # tasks in every tool: each output embeds the cksum of its dependencies' outputs).
    touch_mid() { echo "date +%s%N >> $big/$1/$mid"; }
    hf big-one --warmup 1 --runs "$RUNS" \
        --prepare "$(touch_mid clab)" -n clab "$clab_run" \
        --prepare "$(touch_mid make)" -n make "$make_run" \
        --prepare "$(touch_mid ninja)" -n ninja "$ninja_run"
    # How many tasks one change reruns (for the notes).
    echo "x" >>"$big/ninja/$mid"
    ninja -C "$big/ninja" -j2 -n | grep -c '^\[' >"$results/big-one.count" || true
    $ninja_run >/dev/null

    rss big-noop-clab "$big/clab" $clab_run
    rss big-noop-ninja "$big/ninja" $ninja_run
    rss big-noop-make "$big/make" $make_run
fi

# ---------------------------------------------------------------------------------------
# f. A small project (100 tasks x 10 inputs): no-op, and one leaf input changed (issue 20).
if [[ " $CASES " == *" small "* ]]; then
    echo "== f. 100 tasks x 10 files x 4 KiB, 10 layers"
    small="$BENCH_DIR/small"
    if [ ! -d "$small/clab" ]; then
        python3 bench/gen.py --out "$small/clab" --tasks 100 --files 10 --size 4096 --layers 10
        cp -a "$small/clab" "$small/ninja"
    fi
    leaf=$(cat "$small/clab/LEAF_INPUT")
    small_clab="$CLAB -C $small/clab -q run all -j2"
    small_ninja="ninja -C $small/ninja -j2"
    $small_clab >/dev/null
    $small_ninja >/dev/null
    sleep 2
    $small_clab >/dev/null # all hits, stats old enough: writes the no-op snapshot
    hf small-noop -N --warmup 3 --runs $((RUNS * 6)) -n clab "$small_clab" -n ninja "$small_ninja"
    # One input of a task no other task depends on gets a new line before each run.
    hf small-one --warmup 2 --runs $((RUNS * 4)) \
        --prepare "date +%s%N >> $small/clab/$leaf" -n clab "$small_clab" \
        --prepare "date +%s%N >> $small/ninja/$leaf" -n ninja "$small_ninja"
fi

# ---------------------------------------------------------------------------------------
# b. One trivial task (`echo hi`): clab vs just (and make).
if [[ " $CASES " == *" trivial "* ]]; then
    echo "== b. one trivial task"
    tri="$BENCH_DIR/trivial"
    [ -d "$tri" ] || python3 bench/gen.py --out "$tri" --trivial
    hf trivial -N --warmup 3 --runs $((RUNS * 6)) \
        -n clab "$CLAB -C $tri -q run hi" \
        -n just "$JUST --justfile $tri/justfile --working-directory $tri hi" \
        -n make "make -s -C $tri hi"
    rss trivial-clab "$tri" "$CLAB" -q run hi
    rss trivial-just "$tri" "$JUST" hi
fi

# ---------------------------------------------------------------------------------------
# c. Scheduling: 10,000 tasks, one 64-byte input each, command `true`.
if [[ " $CASES " == *" sched "* ]]; then
    echo "== c. 10,000-node graph"
    sched="$BENCH_DIR/sched"
    [ -d "$sched" ] || python3 bench/gen.py --out "$sched" --tasks 10000 --files 1 --size 64 \
        --layers 10 --command true
    cp -a "$sched" "$sched-ninja" 2>/dev/null || true
    hf sched -N --warmup 1 --runs "$RUNS" \
        -n "clab graph --format json" "$CLAB -C $sched graph --format json" \
        -n "clab list" "$CLAB -C $sched list" \
        -n "clab run --dry-run (cold stat cache)" "$CLAB -C $sched run --dry-run all"
    # The same two commands as a user runs them: once, after the machine was idle. Back to
    # back, a process reuses the memory the last one freed; after a pause a virtual machine
    # may have handed it back to its host, and every fresh page is faulted in from there.
    hf sched-paused -N --runs "$RUNS" --prepare "sleep 3" \
        -n "clab list (after 3 s idle)" "$CLAB -C $sched list" \
        -n "clab graph --format json (after 3 s idle)" "$CLAB -C $sched graph --format json"
    # A no-op run of the whole graph after a real one (everything cached), beside ninja.
    $CLAB -C "$sched" -q run all -j2 >/dev/null
    ninja -C "$sched-ninja" -j2 >/dev/null
    sleep 2
    hf sched-noop --warmup 1 --runs "$RUNS" \
        -n "clab list (parse cache)" "$CLAB -C $sched list" \
        -n "clab graph --format json (parse cache)" "$CLAB -C $sched graph --format json" \
        -n "clab run --dry-run (warm)" "$CLAB -C $sched run --dry-run all" \
        -n "clab run (no-op)" "$CLAB -C $sched -q run all -j2" \
        -n "ninja (no-op)" "ninja -C $sched-ninja -j2"
    rss sched-graph "$sched" "$CLAB" graph --format json
    rss sched-dry "$sched" "$CLAB" run --dry-run all
    rss sched-noop "$sched" "$CLAB" -q run all -j2
    rss sched-ninja "$sched-ninja" ninja -j2
fi

# ---------------------------------------------------------------------------------------
# d. Cold hashing of a 1 GiB tree (1,024 files of 1 MiB) vs b3sum, page cache warm.
if [[ " $CASES " == *" hash "* ]]; then
    echo "== d. hashing 1 GiB"
    hash="$BENCH_DIR/hash"
    [ -d "$hash" ] || python3 bench/gen.py --out "$hash" --hash-tree $((1 << 30)) --files 1024
    cat "$hash"/big/*/* >/dev/null # into the page cache
    hf hash --warmup 1 --runs "$RUNS" \
        --prepare "rm -rf $hash/.clab" -n "clab run --dry-run (no stat cache)" \
        "$CLAB -C $hash run --dry-run hash" \
        --prepare "true" -n "b3sum" "b3sum $hash/big/*/*.bin" \
        --prepare "true" -n "b3sum --no-mmap" "b3sum --no-mmap $hash/big/*/*.bin"
fi

echo $(($(date +%s) - start)) >"$results/elapsed.txt"
echo "== rendering docs/benchmarks.md"
python3 bench/render.py "$results" "$repo/docs/benchmarks.md"
echo "done in $(cat "$results/elapsed.txt") s"
