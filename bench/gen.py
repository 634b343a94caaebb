#!/usr/bin/env python3
"""Generate a benchmark workspace for clab, make, ninja and just.

Layered graph mode (the default): N tasks in L layers, each task with F input files of
SIZE bytes (deterministic pseudo-random hex text) under src/tNNNNN/, and 2-3 dependencies
(--deps-min/--deps-max) picked at random from the layer before. Every task does the same
work in every tool:

    cat src/tNNNNN/*.txt > out/tNNNNN.txt                    # its own inputs
    cksum out/<dep1>.txt out/<dep2>.txt >> out/tNNNNN.txt    # one line per dependency

The cksum line makes each output depend on the *contents* of its dependencies' outputs,
so a changed input reruns the same downstream cone in clab (content keys), make and ninja
(mtimes), and outputs stay small (own inputs + a few lines) however deep the graph is.

Files written: tasks.kdl (an `all` aggregate over every task), Makefile (`all`),
build.ninja (`default` every output), and the src/ tree. `--files 0` writes no input files
and no `inputs` (pure scheduling); `--command true` replaces the work with `true`.

Single-task mode (`--trivial`): one task `hi` running `echo hi`, as tasks.kdl and justfile.

Hash-tree mode (`--hash-tree BYTES`): a tree of --files files adding up to BYTES under
big/, and a tasks.kdl with one task whose inputs are `big/**` (to time cold hashing).

Workspace mode (`--workspace M`): a monorepo of M members under pkgs/mNNN, each with
--member-tasks T tasks t00..tTT (default 20) and one 64-byte input per task (src/tKK.txt).
Member i's package.json depends on 1-3 earlier members (`"*"` ranges: npm has no
`workspace:` protocol; clab reads either), so the
member graph is acyclic. Task tK depends on t(K-1) of its own member and, as `^tK`, on tK
of every member it depends on (turbo's `dependsOn: ["^tK"]`). Each task does

    cat src/tKK.txt > out/tKK.txt                              # its own input
    cksum <the outputs it depends on> >> out/tKK.txt           # one line per dependency

Written for clab (root tasks.kdl with `members "pkgs/*"`, a tasks.kdl per member), for
turbo (root package.json with npm `workspaces` and `packageManager`, turbo.json, a
`scripts` entry per task in each member's package.json) and for ninja (one build.ninja at
the root, each command `cd`-ing into its member). All three run the same shell lines.

Standard library only; the same --seed always writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path


def task_name(i: int, width: int) -> str:
    return f"t{i:0{width}d}"


def content(rng: random.Random, size: int) -> bytes:
    """`size` bytes of hex text ending in a newline."""
    raw = rng.randbytes((size + 1) // 2).hex().encode()
    return raw[: size - 1] + b"\n"


def layered(args: argparse.Namespace, root: Path) -> None:
    rng = random.Random(args.seed)
    n, layers = args.tasks, args.layers
    if layers < 1 or n < layers:
        sys.exit("gen.py: need at least one task per layer")
    width = max(4, len(str(n - 1)))
    layer_of = [i * layers // n for i in range(n)]
    members: list[list[int]] = [[] for _ in range(layers)]
    for i, layer in enumerate(layer_of):
        members[layer].append(i)
    deps: list[list[int]] = []
    for i in range(n):
        layer = layer_of[i]
        if layer == 0:
            deps.append([])
            continue
        pool = members[layer - 1]
        k = min(len(pool), rng.randint(args.deps_min, args.deps_max))
        deps.append(sorted(rng.sample(pool, k)))

    names = [task_name(i, width) for i in range(n)]

    # Input files.
    if args.files > 0:
        for i in range(n):
            d = root / "src" / names[i]
            d.mkdir(parents=True, exist_ok=True)
            for f in range(args.files):
                (d / f"f{f:03d}.txt").write_bytes(content(rng, args.size))
    (root / "out").mkdir(parents=True, exist_ok=True)

    def commands(i: int) -> list[str]:
        if args.command:
            return [args.command]
        name = names[i]
        parts = []
        if args.files > 0:
            parts.append(f"cat src/{name}/*.txt > out/{name}.txt")
        else:
            parts.append(f": > out/{name}.txt")
        if deps[i]:
            outs = " ".join(f"out/{names[d]}.txt" for d in deps[i])
            parts.append(f"cksum {outs} >> out/{name}.txt")
        return [" && ".join(parts)]

    # tasks.kdl
    kdl = ['project "bench"', ""]
    for i in range(n):
        name = names[i]
        kdl.append(f'task "{name}" {{')
        if deps[i]:
            kdl.append("    deps " + " ".join(f'"{names[d]}"' for d in deps[i]))
        if args.files > 0:
            kdl.append(f'    inputs "src/{name}/*.txt"')
        if not args.command:
            kdl.append(f'    outputs "out/{name}.txt"')
        for cmd in commands(i):
            kdl.append(f"    run {kdl_string(cmd)}")
        kdl.append("}")
    kdl.append('task "all" {')
    for start in range(0, n, 16):
        kdl.append("    deps " + " ".join(f'"{x}"' for x in names[start : start + 16]))
    kdl.append("}")
    (root / "tasks.kdl").write_text("\n".join(kdl) + "\n")

    # Makefile: each output depends on its inputs and its dependencies' outputs.
    # No built-in rules: otherwise make searches implicit rules for each of the 40,000
    # input files on every run (20 s instead of 0.2 s for a no-op).
    mk = ["MAKEFLAGS += --no-builtin-rules", ".SUFFIXES:", ".PHONY: all", "all: " + " ".join(f"out/{x}.txt" for x in names), ""]
    for i in range(n):
        name = names[i]
        prereqs = []
        if args.files > 0:
            prereqs += [f"src/{name}/f{f:03d}.txt" for f in range(args.files)]
        prereqs += [f"out/{names[d]}.txt" for d in deps[i]]
        mk.append(f"out/{name}.txt: " + " ".join(prereqs))
        for cmd in commands(i):
            mk.append("\t" + cmd.replace("$", "$$"))
        if args.command:
            mk.append(f"\t@touch out/{name}.txt")
        mk.append("")
    (root / "Makefile").write_text("\n".join(mk))

    # build.ninja: one rule per task would bloat the file; one `sh` rule with $cmd.
    nj = ["rule sh", "  command = $cmd", "  description = $out", ""]
    for i in range(n):
        name = names[i]
        prereqs = []
        if args.files > 0:
            prereqs += [f"src/{name}/f{f:03d}.txt" for f in range(args.files)]
        prereqs += [f"out/{names[d]}.txt" for d in deps[i]]
        cmd = " && ".join(commands(i))
        if args.command:
            cmd += f" && touch out/{name}.txt"
        nj.append(f"build out/{name}.txt: sh " + " ".join(prereqs))
        nj.append(f"  cmd = {ninja_escape(cmd)}")
    nj.append("")
    nj.append("default " + " ".join(f"out/{x}.txt" for x in names))
    (root / "build.ninja").write_text("\n".join(nj) + "\n")

    # Which input file to touch for the "one input changed" case: the first file of the
    # first task of the middle layer.
    mid = members[layers // 2][0]
    (root / "MID_INPUT").write_text(
        (f"src/{names[mid]}/f000.txt" if args.files > 0 else "") + "\n"
    )
    # ... and for "one leaf input changed": the first file of the first task of the last
    # layer, which no task depends on (one task reruns).
    leaf = members[layers - 1][0]
    (root / "LEAF_INPUT").write_text(
        (f"src/{names[leaf]}/f000.txt" if args.files > 0 else "") + "\n"
    )


def kdl_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ninja_escape(s: str) -> str:
    return s.replace("$", "$$")


def trivial(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tasks.kdl").write_text('task "hi" {\n    run "echo hi"\n}\n')
    (root / "justfile").write_text("hi:\n    echo hi\n")
    (root / "Makefile").write_text("hi:\n\techo hi\n.PHONY: hi\n")


def hash_tree(args: argparse.Namespace, root: Path) -> None:
    rng = random.Random(args.seed)
    files = max(1, args.files)
    per_file = args.hash_tree // files
    # Random bytes are expensive to make in Python; repeat a 1 MiB random block with a
    # per-file prefix so every file has distinct contents (hash cost does not depend on it).
    block = rng.randbytes(1 << 20)
    for i in range(files):
        d = root / "big" / f"d{i // 64:03d}"
        d.mkdir(parents=True, exist_ok=True)
        prefix = f"file {i}\n".encode()
        body = (block * (per_file // len(block) + 1))[: per_file - len(prefix)]
        (d / f"f{i:05d}.bin").write_bytes(prefix + body)
    (root / "tasks.kdl").write_text(
        'task "hash" {\n    inputs "big/**"\n    run "true"\n}\n'
    )


def workspace(args: argparse.Namespace, root: Path) -> None:
    rng = random.Random(args.seed)
    members, per = args.workspace, args.member_tasks
    names = [f"m{i:03d}" for i in range(members)]
    deps: list[list[int]] = []
    for i in range(members):
        k = min(i, rng.randint(1, 3))
        deps.append(sorted(rng.sample(range(i), k)) if k else [])
    tasks = [f"t{k:02d}" for k in range(per)]

    def own_deps(i: int, k: int) -> list[str]:
        """Outputs task k of member i depends on, relative to the member's directory."""
        outs = [f"out/{tasks[k - 1]}.txt"] if k else []
        outs += [f"../{names[d]}/out/{tasks[k]}.txt" for d in deps[i]]
        return outs

    def command(i: int, k: int) -> str:
        parts = [f"cat src/{tasks[k]}.txt > out/{tasks[k]}.txt"]
        outs = own_deps(i, k)
        if outs:
            parts.append(f"cksum {' '.join(outs)} >> out/{tasks[k]}.txt")
        return " && ".join(parts)

    (root / "tasks.kdl").write_text('project "bench-workspace"\nmembers "pkgs/*"\n')
    nj = ["rule sh", "  command = $cmd", "  description = $out", ""]
    outputs = []
    for i, name in enumerate(names):
        d = root / "pkgs" / name
        (d / "src").mkdir(parents=True, exist_ok=True)
        (d / "out").mkdir(parents=True, exist_ok=True)
        kdl = []
        scripts = {}
        for k, task in enumerate(tasks):
            (d / "src" / f"{task}.txt").write_bytes(content(rng, 64))
            kdl.append(f'task "{task}" {{')
            task_deps = ([f'"{tasks[k - 1]}"'] if k else []) + [f'"^{task}"']
            kdl.append("    deps " + " ".join(task_deps))
            kdl.append(f'    inputs "src/{task}.txt"')
            kdl.append(f'    outputs "out/{task}.txt"')
            kdl.append(f"    run {kdl_string(command(i, k))}")
            kdl.append("}")
            scripts[task] = command(i, k)
            out = f"pkgs/{name}/out/{task}.txt"
            outputs.append(out)
            prereqs = [f"pkgs/{name}/src/{task}.txt"]
            prereqs += [f"pkgs/{name}/{o}" if not o.startswith("..") else
                        f"pkgs/{o[3:]}" for o in own_deps(i, k)]
            nj.append(f"build {out}: sh " + " ".join(prereqs))
            nj.append(f"  cmd = {ninja_escape(f'cd pkgs/{name} && ' + command(i, k))}")
        (d / "tasks.kdl").write_text("\n".join(kdl) + "\n")
        package = {
            "name": f"@bench/{name}",
            "version": "1.0.0",
            "private": True,
            "scripts": scripts,
            "dependencies": {f"@bench/{names[x]}": "*" for x in deps[i]},
        }
        (d / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    nj.append("")
    nj.append("default " + " ".join(outputs))
    (root / "build.ninja").write_text("\n".join(nj) + "\n")
    (root / "package.json").write_text(json.dumps({
        "name": "bench-workspace",
        "private": True,
        "packageManager": "npm@10.9.0",
        "workspaces": ["pkgs/*"],
    }, indent=2) + "\n")
    turbo_tasks = {}
    for k, task in enumerate(tasks):
        turbo_tasks[task] = {
            "dependsOn": ([tasks[k - 1]] if k else []) + [f"^{task}"],
            "inputs": [f"src/{task}.txt"],
            "outputs": [f"out/{task}.txt"],
        }
    (root / "turbo.json").write_text(json.dumps({
        "$schema": "https://turbo.build/schema.json",
        "tasks": turbo_tasks,
    }, indent=2) + "\n")
    (root / ".gitignore").write_text(".clab/\n.turbo/\nnode_modules/\n.ninja_*\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="workspace directory to create")
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--files", type=int, default=20, help="input files per task")
    p.add_argument("--size", type=int, default=4096, help="bytes per input file")
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--deps-min", type=int, default=2)
    p.add_argument("--deps-max", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--command", default="", help="replace each task's work with this command")
    p.add_argument("--trivial", action="store_true", help="one `echo hi` task (with justfile)")
    p.add_argument("--hash-tree", type=int, default=0, metavar="BYTES",
                   help="a tree of --files files totalling BYTES under big/")
    p.add_argument("--workspace", type=int, default=0, metavar="MEMBERS",
                   help="a monorepo of MEMBERS members for clab, turbo and ninja")
    p.add_argument("--member-tasks", type=int, default=20, help="tasks per member")
    args = p.parse_args()
    root: Path = args.out
    if root.exists() and any(root.iterdir()):
        sys.exit(f"gen.py: {root} exists and is not empty")
    root.mkdir(parents=True, exist_ok=True)
    if args.trivial:
        trivial(root)
    elif args.hash_tree:
        hash_tree(args, root)
    elif args.workspace:
        workspace(args, root)
    else:
        layered(args, root)


if __name__ == "__main__":
    main()
