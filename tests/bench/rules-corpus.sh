#!/bin/sh
# Time `clab rules validate` and `clab rules list` (release build) over a corpus of real
# rule files. Every `*.mdc` and `*.mdc.md` draft below CORPUS is copied, folders kept and
# drafts renamed to `*.mdc`, into a temp project's `.cursor/rules` (no tasks.kdl: the temp
# directory is the root). The numbers go into docs/rules.md.
#
#   cargo build --release -p clab
#   sh tests/bench/rules-corpus.sh [CORPUS] [RUNS]
set -eu
corpus=${1:-/work/shared/corpus/mdc}
runs=${2:-5}
here=$(cd "$(dirname "$0")/../.." && pwd)
clab=${CLAB:-$here/target/release/clab}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rules="$tmp/.cursor/rules"
(cd "$corpus" && find . -type f \( -name '*.mdc' -o -name '*.mdc.md' \)) | while read -r f; do
    target="$rules/${f%.md}"
    mkdir -p "$(dirname "$target")"
    cp "$corpus/$f" "$target"
done
echo "files copied: $(find "$rules" -name '*.mdc' | wc -l)"
ms() { date +%s%N | cut -c1-13; }
i=0
while [ "$i" -lt "$runs" ]; do
    t0=$(ms); "$clab" -C "$tmp" -v rules validate >/dev/null 2>"$tmp/validate.err" || true; t1=$(ms)
    "$clab" -C "$tmp" rules list >"$tmp/list.out"; t2=$(ms)
    echo "run $i: validate $((t1 - t0)) ms wall ($(grep '^read and parsed' "$tmp/validate.err")); list $((t2 - t1)) ms wall"
    i=$((i + 1))
done
"$clab" -C "$tmp" rules validate 2>/dev/null | tail -1 || true
tail -1 "$tmp/list.out"
echo "diagnostics by code:"
"$clab" -C "$tmp" rules validate --format json 2>/dev/null \
    | grep '"code"' | sort | uniq -c | sort -rn || true
