#!/usr/bin/env bash
# Restoring the 2,000-task workspace from a shared cache on loopback, in one hyperfine run:
#
#   local   clab, the same checkout with its .clab/ and every output deleted
#   carried clab, a fresh copy of the sources at another path with a copy of that .clab/
#           (what a CI job that carries .clab/ in its own cache restores from)
#   remote  clab, a fresh copy of the sources at another path (no .clab/, an empty out/),
#           CLAB_REMOTE_CACHE pointing at nginx (WebDAV PUT)
#   turbo   turbo, the same workload as an npm-workspaces monorepo (bench/gen_turbo.py),
#           a fresh copy restored from turborepo-remote-cache (local storage) with an empty
#           local cache (--cache=remote:r, --cache-dir inside the fresh copy)
#
#   bash bench/remote.sh                # about 10 minutes on 2 cores (turbo's populate run: ~5)
#   RUNS=10 bash bench/remote.sh        # timed runs per command (default 5, plus 1 warmup)
#   BENCH_DIR=/some/dir KEEP=1 ...      # where the workspaces go / keep them
#   TASKS=200 FILES=5 ...               # a smaller workspace (a quick check of the script)
#   CLAB=/path/to/clab ...              # this binary instead of building target/release/clab
#   NO_RENDER=1 ...                     # leave docs/benchmarks.md alone (bench/run.sh renders)
#   BENCH_DIR=/some/dir REUSE=1 ...     # keep the workspaces, and on the next run reuse them and
#                                       # turbo's populated cache (its populating run is ~25 min
#                                       # on 2 cores); clab's entries are always written afresh
#   SKIP_TURBO=1 ...                    # clab's two rows only, for iterating (no turbo, no
#                                       # turborepo-remote-cache, no populate run of 5+ min);
#                                       # results go to the bench directory and print, and
#                                       # bench/results/ and docs/benchmarks.md stay as they are
#
# Put BENCH_DIR on a file system like a CI runner's: ext4 with a journal (what mkfs.ext4
# makes by default, and what stock Linux installs use). ext4 without a journal passes
# over inodes freed in the last minute when it allocates, so a restore right after the
# previous copy was deleted pays for the deletion: the carried row spent 36% of its
# samples there (bench/notes.md). The file system is recorded beside the results. On a
# machine whose disk has no journal:
#   truncate -s 30G /work/bench.img && mkfs.ext4 -q /work/bench.img && mkdir -p /mnt/bench &&
#   mount -o loop /work/bench.img /mnt/bench && BENCH_DIR=/mnt/bench bash bench/remote.sh
#
# Every restore is checked, not assumed: before each timed run the previous run's outputs
# are compared byte for byte with the populating build's (clab's out/ for all three tools:
# the turbo packages write the same bytes), and afterwards every run's summary is read from
# hyperfine's captured output — clab must say `0 ran` (and, from the remote, `N remote`),
# turbo `N cached, N total`. A restore that silently ran fails the script.
#
# Needs: cargo, python3, hyperfine, nginx, turbo 2.x and turborepo-remote-cache (npm i -g
# turbo turborepo-remote-cache), node. Writes bench/results/remote.{json,cmds,log} and
# remote-machine.txt, then renders docs/benchmarks.md (section e).
set -euo pipefail

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
repo=$(cd "$(dirname "$0")/.." && pwd)
results="$repo/bench/results"
SKIP_TURBO=${SKIP_TURBO:-}

# ---------------------------------------------------------------------------------------
# `remote.sh prepare KIND W` and `remote.sh verify KIND W`: hyperfine's prepare step and the
# output check, run from the measurement below.
verify() { # KIND W: the outputs of KIND's last run are byte-identical to the reference
    local kind=$1 W=$2
    python3 - "$kind" "$W" <<'PY'
import sys
from pathlib import Path
kind, w = sys.argv[1], Path(sys.argv[2])
ref = w / "ref-out"
expected = sorted(p.name for p in ref.iterdir())
if kind == "turbo":
    pkgs = w / "turbo-fresh" / "packages"
    got = {p.parent.parent.name + ".txt": p for p in pkgs.glob("*/out/*")}
    extra = sorted(set(got) - set(expected))
else:
    out = w / {"local": "local", "carried": "carried"}.get(kind, "fresh") / "out"
    got = {p.name: p for p in out.iterdir()} if out.is_dir() else {}
    extra = sorted(set(got) - set(expected))
missing = [n for n in expected if n not in got]
differ = [n for n in expected if n in got and got[n].read_bytes() != (ref / n).read_bytes()]
if missing or differ or extra:
    sys.exit(f"remote.sh: {kind}: {len(missing)} outputs missing, {len(differ)} differ, "
             f"{len(extra)} unexpected (first: {(missing + differ + extra)[:3]})")
PY
}

prepare() { # KIND W: check the previous run of KIND, then reset its state
    local kind=$1 W=$2
    if [ -e "$W/$kind.ran" ]; then
        verify "$kind" "$W"
    fi
    case $kind in
        local) rm -rf "$W/local/out" && mkdir "$W/local/out" ;;
        carried) rm -rf "$W/carried" && cp -a "$W/src" "$W/carried" &&
            cp -a "$W/local/.clab" "$W/carried/.clab" ;;
        remote) rm -rf "$W/fresh" && cp -a "$W/src" "$W/fresh" ;;
        turbo) rm -rf "$W/turbo-fresh" && cp -a "$W/turbo-src" "$W/turbo-fresh" ;;
    esac
    # The sources in the page cache, as after a checkout (the copies above are).
    [ "$kind" != local ] || find "$W/local/src" -type f -exec cat {} + >/dev/null
    : >"$W/$kind.ran"
    echo "== $kind run"
}

case ${1:-} in
    prepare) prepare "$2" "$3"; exit ;;
    verify) verify "$2" "$3"; exit ;;
esac

# ---------------------------------------------------------------------------------------
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
TASKS=${TASKS:-2000}
FILES=${FILES:-20}
SIZE=${SIZE:-4096}
LAYERS=${LAYERS:-10}
tools=(hyperfine python3)
[ -n "$SKIP_TURBO" ] || tools+=(node turbo turborepo-remote-cache)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || { echo "bench/remote.sh: $tool is missing" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "bench/remote.sh: nginx is missing (apt-get install -y nginx)" >&2; exit 2; }
# turbo's npm package is a node launcher of a native binary: time the binary itself.
[ -n "$SKIP_TURBO" ] || TURBO=$(node -e 'try { const p = require.resolve("@turbo/linux-64/bin/turbo", { paths: [require("path").dirname(require("fs").realpathSync(process.argv[1]))] }); console.log(p) } catch { console.log(process.argv[1]) }' "$(command -v turbo)")

if [ -z "${CLAB:-}" ]; then
    echo "== building clab (release)"
    (cd "$repo" && cargo build --release -q -p clab)
    CLAB="$repo/target/release/clab"
fi
export CLAB_NO_PROGRESS=1 TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

if [ -z "${BENCH_DIR:-}" ]; then
    BENCH_DIR=$(mktemp -d /tmp/clab-bench.XXXXXX)
    [ -n "${KEEP:-}" ] || cleanup_dir=$BENCH_DIR
fi
W="$BENCH_DIR/remote"
# A run without turbo is not the page's measurement: its results stay in the bench directory.
[ -z "$SKIP_TURBO" ] || results="$W/results"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "${cleanup_dir:-}" ]; then rm -rf "$cleanup_dir"; elif [ -z "${KEEP:-}${REUSE:-}" ]; then rm -rf "$W"; fi
}
trap cleanup EXIT
# Reused: the same workload, generated and populated by an earlier run with REUSE=1.
reusing=
if [ -n "${REUSE:-}" ] && [ -e "$W/turbo-populated" ] &&
    [ "$(cat "$W/workload" 2>/dev/null)" = "$TASKS $FILES $SIZE $LAYERS" ]; then
    reusing=1
else
    rm -rf "$W"
fi
mkdir -p "$W" "$results"
echo "workspaces in $W${reusing:+ (reused, with the populated turbo cache)}"

fs_of() { # DIR: its file system's type, and for ext4 whether it has a journal
    local source="" type="" dev
    read -r source type < <(findmnt -no SOURCE,FSTYPE -T "$1" 2>/dev/null) || true
    [ -n "$type" ] || { echo "unknown (no findmnt)"; return; }
    dev=$(basename "$source")
    if [ "$type" = ext4 ] && [ -r "/sys/fs/ext4/$dev/journal_task" ]; then
        if [ "$(cat "/sys/fs/ext4/$dev/journal_task")" = "<none>" ]; then
            type="ext4 without a journal"
        else
            type="ext4 with a journal"
        fi
    fi
    echo "$type ($source)"
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # PORT NAME LOG
    local i
    for i in $(seq 100); do
        if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench/remote.sh: $2 did not listen on port $1" >&2
    cat "$3" >&2
    exit 1
}

# nginx with WebDAV PUT (the configuration of clab_remote::test_servers), one process.
start_nginx() {
    local dir="$W/nginx" port
    port=$(free_port)
    mkdir -p "$dir/data"
    cat >"$dir/nginx.conf" <<EOF
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 0;
        location /cache/ {
            root $dir/data;
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:rw all:r;
        }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
        >"$dir/server.log" 2>&1 &
    pids+=($!)
    wait_port "$port" nginx "$dir/error.log"
    NGINX_URL="http://127.0.0.1:$port/cache"
}

# turborepo-remote-cache with local storage.
TURBO_TOKEN_VALUE=clab-bench-token
TURBO_TEAM_VALUE=clab-bench
start_turbo_cache() {
    local dir="$W/turbo-cache" port
    port=$(free_port)
    mkdir -p "$dir/data"
    NODE_ENV=production HOST=127.0.0.1 PORT=$port STORAGE_PROVIDER=local \
        STORAGE_PATH="$dir/data" STORAGE_PATH_USE_TMP_FOLDER=false \
        TURBO_TOKEN=$TURBO_TOKEN_VALUE LOG_LEVEL=warn \
        turborepo-remote-cache >"$dir/server.log" 2>&1 &
    pids+=($!)
    wait_port "$port" turborepo-remote-cache "$dir/server.log"
    TURBO_API_URL="http://127.0.0.1:$port"
}

if [ -z "$reusing" ]; then
    echo "== generating $TASKS tasks x $FILES files x $SIZE bytes, $LAYERS layers"
    python3 "$repo/bench/gen.py" --out "$W/src" --tasks "$TASKS" --files "$FILES" --size "$SIZE" \
        --layers "$LAYERS"
    [ -n "$SKIP_TURBO" ] || python3 "$repo/bench/gen_turbo.py" --from "$W/src" --out "$W/turbo-src" \
        --npm-version "$(npm --version 2>/dev/null || echo 10.0.0)"
    echo "$TASKS $FILES $SIZE $LAYERS" >"$W/workload"
fi

start_nginx
echo "nginx at $NGINX_URL"
if [ -z "$SKIP_TURBO" ]; then
    start_turbo_cache
    echo "turborepo-remote-cache at $TURBO_API_URL"
fi

clab_env=(env "CLAB_REMOTE_CACHE=$NGINX_URL")
turbo_env=(env "TURBO_API=${TURBO_API_URL:-}" "TURBO_TOKEN=$TURBO_TOKEN_VALUE"
    "TURBO_TEAM=$TURBO_TEAM_VALUE" TURBO_TELEMETRY_DISABLED=1)
turbo_args=(run build --ui=stream --output-logs=none)

echo "== populating the remotes"
# clab: one run in the checkout that is then the local case; uploads are flushed before exit.
rm -rf "$W/local" "$W/ref-out" "$W/fresh" "$W/carried" "$W/nginx/data" &&
    mkdir -p "$W/nginx/data"
cp -a "$W/src" "$W/local"
"${clab_env[@]}" "$CLAB" -C "$W/local" -q run all -j2
cp -a "$W/local/out" "$W/ref-out"
echo "nginx holds $(find "$W/nginx/data" -type f | wc -l) objects"
# turbo: one run of the monorepo writing the remote only (unless skipped, or reused).
if [ -z "$SKIP_TURBO" ] && [ -z "$reusing" ]; then
    cp -a "$W/turbo-src" "$W/turbo-fresh"
    "${turbo_env[@]}" "$TURBO" --cwd "$W/turbo-fresh" "${turbo_args[@]}" --cache=remote:rw \
        --cache-dir="$W/turbo-fresh/.turbo/cache" | tee "$W/turbo-populate.log" | tail -4
    grep -Eq "Tasks: +$TASKS successful, $TASKS total" "$W/turbo-populate.log" ||
        { echo "bench/remote.sh: turbo's populating run failed" >&2; exit 1; }
    verify turbo "$W" # turbo's packages write the same bytes as clab's tasks
    : >"$W/turbo-populated"
fi
[ -n "$SKIP_TURBO" ] ||
    echo "turborepo-remote-cache holds $(find "$W/turbo-cache/data" -type f | wc -l) artifacts"

# ---------------------------------------------------------------------------------------
local_cmd="$CLAB -C $W/local -q run all -j2"
carried_cmd="$CLAB -C $W/carried -q run all -j2"
remote_cmd="${clab_env[*]} $CLAB -C $W/fresh -q run all -j2"
turbo_cmd="${turbo_env[*]} ${TURBO:-turbo} --cwd $W/turbo-fresh ${turbo_args[*]} --cache=remote:r --cache-dir=$W/turbo-fresh/.turbo/cache"
names=("clab, local restore" "clab, local restore, fresh checkout (.clab/ carried)"
    "clab, remote restore (nginx)" "turbo, remote restore")
kinds=(local carried remote turbo)
[ -z "$SKIP_TURBO" ] || kinds=(local carried remote)
for i in "${!kinds[@]}"; do
    cmd_var=${kinds[$i]}_cmd
    printf '%s\t%s\n' prepare "bash bench/remote.sh prepare ${kinds[$i]} \$W" "${names[$i]}" "${!cmd_var}"
done >"$results/remote.cmds"

{
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "commit=$(cd "$repo" && git rev-parse --short HEAD)$(cd "$repo" && git diff --quiet HEAD -- engine cli || echo '+dirty')"
    echo "clab=$($CLAB --version 2>/dev/null || echo '?')"
    if [ -n "$SKIP_TURBO" ]; then
        echo "turbo=skipped (SKIP_TURBO=1)"
    else
        echo "turbo=$("$TURBO" --version)"
        echo "turborepo-remote-cache=$(node -p 'require(require("path").dirname(require("fs").realpathSync(process.argv[1])) + "/../package.json").version' "$(command -v turborepo-remote-cache)" 2>/dev/null || echo '?')"
        echo "node=$(node --version)"
    fi
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*version: //')"
    echo "hyperfine=$(hyperfine --version)"
    echo "workload=$TASKS tasks x $FILES files x $SIZE bytes, $LAYERS layers"
    echo "filesystem=$(fs_of "$W")"
    objects="$(find "$W/nginx/data" -type f | wc -l) on nginx ($(du -sm "$W/nginx/data" | cut -f1) MB)"
    [ -n "$SKIP_TURBO" ] ||
        objects+=", $(find "$W/turbo-cache/data" -type f | wc -l) on turborepo-remote-cache ($(du -sm "$W/turbo-cache/data" | cut -f1) MB)"
    echo "objects=$objects"
    echo "runs=$RUNS (+$WARMUP warmup)"
    echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$results/remote-machine.txt"

echo "== measuring"
rm -f "$W"/*.ran
commands=()
for i in "${!kinds[@]}"; do
    kind=${kinds[$i]}
    cmd_var=${kind}_cmd
    commands+=(--prepare "bash $self prepare $kind $W" -n "${names[$i]}" "${!cmd_var}")
done
hyperfine -N --style basic --output=inherit --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$results/remote.json" \
    "${commands[@]}" \
    >"$W/hyperfine.log" 2>&1 || { tail -40 "$W/hyperfine.log" >&2; exit 1; }
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/remote-machine.txt"
for kind in "${kinds[@]}"; do verify "$kind" "$W"; done

# Every run's own summary: nothing ran, everything came from where it should.
python3 - "$W/hyperfine.log" "$TASKS" "$((RUNS + WARMUP))" "$results/remote-check.txt" "${kinds[@]}" <<'PY'
import re, sys
log, n, runs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
kinds = sys.argv[5:]
expect = {
    "local": re.compile(rf"^{n} tasks: 0 ran, {n} cached in "),
    "carried": re.compile(rf"^{n} tasks: 0 ran, {n} cached in "),
    "remote": re.compile(rf"^{n} tasks: 0 ran, {n} cached \({n} remote\) in "),
    "turbo": re.compile(rf"^\s*Cached:\s+{n} cached, {n} total"),
}
expect = {k: v for k, v in expect.items() if k in kinds}
summary = re.compile(r"^(\d+ tasks: |\s*Cached:\s)")
kind, seen, good, bad = None, {}, {k: 0 for k in expect}, []
for line in open(log, errors="replace"):
    line = line.rstrip("\n")
    if m := re.match(r"^== (\w+) run$", line):
        kind = m.group(1)
        seen[kind] = seen.get(kind, 0) + 1
    elif kind and summary.match(line):
        if expect[kind].match(line):
            good[kind] += 1
        else:
            bad.append(f"{kind}: {line}")
lines = [f"{k}: {good[k]} of {seen.get(k, 0)} runs restored all {n} tasks (expected {runs})"
         for k in expect]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
if bad or any(good[k] != runs or seen.get(k) != runs for k in expect):
    sys.exit("remote.sh: a run did not restore everything: " + "; ".join(bad[:5]))
PY
grep -E '^(Benchmark|  Time|  Range|    [0-9.]+ ± )' "$W/hyperfine.log" || true
# The log of the last run of each (the verification of every run is above).
cp "$W/hyperfine.log" "$results/remote.log"

if [ -z "${NO_RENDER:-}" ] && [ -z "$SKIP_TURBO" ]; then
    python3 "$repo/bench/render.py" "$results" "$repo/docs/benchmarks.md"
fi
