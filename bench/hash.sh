#!/bin/sh
# Hashing benchmark for clab's input index and stat cache; results go in docs/cache.md.
#
#   bench/hash.sh [WORKDIR]      (default WORKDIR: /tmp/clab-bench)
#
# Builds the `hash_bench` example with the engine at opt-level 3 (dependencies keep the dev
# profile's opt-level 1; blake3's SIMD is assembly, so hashing speed is unaffected), generates
# a tree of 40,000 × 4 KiB files and one of 256 × 4 MiB files (1 GiB), then runs:
#   - a cold pass (empty stat cache), the stat-cache flush, a reopen and a warm pass;
#   - b3sum over the same files, for comparison (apt-get install b3sum);
#   - 2,000 tasks × (20 own files + a shared glob) selected from one index;
#   - read+hash vs mmap+rayon per file size (the MMAP_THRESHOLD choice).
# "Cold" means an empty stat cache, not an empty page cache.
set -eu
work=${1:-/tmp/clab-bench}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo build -q -p clab-plan --example hash_bench \
    --config 'profile.dev.package.clab-plan.opt-level=3'
bin="$here/target/debug/examples/hash_bench"
mkdir -p "$work"
[ -d "$work/small" ] || "$bin" gen "$work/small" 40000 4KiB
[ -d "$work/big" ] || "$bin" gen "$work/big" 256 4MiB
cd "$work"
echo "== 40,000 x 4 KiB"
for i in 1 2 3; do "$bin" run small cache-small; done
/usr/bin/time -f "b3sum: wall %e s, user %U s, sys %S s" \
    sh -c 'find small -type f -print0 | xargs -0 b3sum >/dev/null'
echo "== 256 x 4 MiB (1 GiB)"
for i in 1 2 3; do
    "$bin" run big cache-big | grep -E 'cold|warm'
    /usr/bin/time -f "b3sum: wall %e s, user %U s, sys %S s" sh -c 'b3sum big/*/* >/dev/null'
done
echo "== 2,000 tasks"
"$bin" scale small cache-scale 'd000/f00000?.bin'
"$bin" scale small cache-scale 'd000/*.bin'
echo "== mmap threshold"
"$bin" threshold "$work/threshold"
