#!/usr/bin/env bash
# Workspace benchmark (issue 17): a monorepo of 100 members x 20 tasks, member dependencies
# from package.json (`workspace:*`), for clab, ninja and turbo on the same tasks. Writes
# bench/results/ws-*.json and re-renders docs/benchmarks.md.
# Member dependencies are package.json `dependencies` (`"*"` ranges, npm workspaces).
#
#   bash bench/workspace.sh                # (about 10 minutes: turbo's cold build runs npm 2,000 times)
#   RUNS=20 bash bench/workspace.sh        # more timing runs per command (default 10)
#   MEMBERS=100 TASKS=20 ...               # the workspace's size
#   BENCH_DIR=/some/dir KEEP=1 ...         # where the workspaces go, and keep them
#
# Needs: cargo, python3, hyperfine, ninja, node with turbo (`npm i -g turbo`).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
RUNS=${RUNS:-10}
MEMBERS=${MEMBERS:-100}
TASKS=${TASKS:-20}
results="$repo/bench/results"
mkdir -p "$results"

for tool in hyperfine ninja python3 turbo; do
    command -v "$tool" >/dev/null || { echo "bench/workspace.sh: $tool is missing" >&2; exit 2; }
done
if [ -z "${BENCH_DIR:-}" ]; then
    BENCH_DIR=$(mktemp -d /tmp/clab-bench.XXXXXX)
    [ -n "${KEEP:-}" ] || trap 'rm -rf "$BENCH_DIR"' EXIT
fi
echo "workspaces in $BENCH_DIR"

echo "== building clab (release)"
cargo build --release -q -p clab
CLAB="$repo/target/release/clab"
export CLAB_NO_PROGRESS=1 TURBO_TELEMETRY_DISABLED=1 TURBO_NO_UPDATE_NOTIFIER=1 DO_NOT_TRACK=1
unset TURBO_API TURBO_TOKEN TURBO_TEAM TURBO_REMOTE_CACHE_SIGNATURE_KEY

hf() { # as in bench/run.sh: $1 = result name, then hyperfine arguments
    local name=$1
    shift
    local args=("$@") i
    : >"$results/$name.cmds"
    for ((i = 0; i < ${#args[@]}; i++)); do
        case ${args[i]} in
            -n) printf '%s\t%s\n' "${args[i + 1]}" "${args[i + 2]}" >>"$results/$name.cmds"; i=$((i + 2)) ;;
            --prepare) printf 'prepare\t%s\n' "${args[i + 1]}" >>"$results/$name.cmds"; i=$((i + 1)) ;;
        esac
    done
    hyperfine --style basic --export-json "$results/$name.json" "$@"
}

ws="$BENCH_DIR/workspace"
last=$(printf 't%02d' $((TASKS - 1)))
if [ ! -d "$ws/clab" ]; then
    python3 bench/gen.py --out "$ws/clab" --workspace "$MEMBERS" --member-tasks "$TASKS"
    cp -a "$ws/clab" "$ws/ninja"
    cp -a "$ws/clab" "$ws/turbo"
    # turbo reads the package manager's lockfile; npm writes one without fetching anything
    # (every dependency is a workspace member).
    (cd "$ws/turbo" && npm install --package-lock-only --ignore-scripts --no-audit --no-fund >/dev/null)
fi
echo "members=$MEMBERS tasks_per_member=$TASKS turbo=$(turbo --version) node=$(node --version)" \
    >"$results/ws-info.txt"

# Every tool builds everything once (turbo: 2,000 npm scripts, minutes), then the inputs'
# mtimes age past the stat cache's racy window so the no-op runs measure the steady state.
echo "== first builds"
"$CLAB" -C "$ws/clab" -q run "$last" -j2 >/dev/null
ninja -C "$ws/ninja" -j2 >/dev/null
(cd "$ws/turbo" && turbo run "$last" --concurrency=2 --output-logs=none >/dev/null)
sleep 2

# Graph build: load every member's tasks.kdl and manifest, resolve `^` through the member
# graph, build the 2,000-node graph (`list` prints it; `--dry-run` also hashes the inputs
# and plans every node against the cache).
hf ws-graph -N --warmup 3 --runs $((RUNS * 2)) \
    -n "clab list" "$CLAB -C $ws/clab list" \
    -n "clab graph --format json" "$CLAB -C $ws/clab graph --format json" \
    -n "clab run --dry-run" "$CLAB -C $ws/clab run --dry-run $last"

# A no-op run of everything, beside ninja and turbo on the same tasks.
hf ws-noop -N --warmup 2 --runs "$RUNS" \
    -n "clab run (no-op)" "$CLAB -C $ws/clab -q run $last -j2" \
    -n "ninja (no-op)" "ninja -C $ws/ninja -j2" \
    -n "turbo run (no-op)" "turbo run $last --cwd $ws/turbo --concurrency=2 --output-logs=none"

echo "== rendering docs/benchmarks.md"
python3 bench/render.py "$results" "$repo/docs/benchmarks.md"
