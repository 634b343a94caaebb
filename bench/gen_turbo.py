#!/usr/bin/env python3
"""Turn a workspace of bench/gen.py (layered mode) into the same workload as a turbo monorepo.

    python3 bench/gen_turbo.py --from WORKSPACE --out MONOREPO

Reads WORKSPACE/tasks.kdl as gen.py writes it (one `task` block per task with `deps`,
`inputs "src/<task>/*.txt"`, `outputs "out/<task>.txt"` and one `run`; the `all` aggregate is
skipped) and writes an npm-workspaces monorepo with one package per task:

    package.json          workspaces ["packages/*"], packageManager npm
    package-lock.json     the workspace links, as `npm install` writes them (turbo reads it)
    turbo.json            build: dependsOn ["^build"], inputs ["src/*.txt"], outputs ["out/**"]
    .gitignore            out/, .turbo/, node_modules/
    packages/<task>/package.json   its `build` script; its dependencies, one per task dep
    packages/<task>/src/*.txt      the task's input files (hard links when possible)

Each package's `build` does what the clab task does, with byte-identical output:

    mkdir -p out && cat src/*.txt > out/<task>.txt
      && for d in <deps>; do (cd ../$d && cksum out/$d.txt); done >> out/<task>.txt

`cksum` runs inside each dependency's package so that its lines name `out/<dep>.txt`, as the
clab task's `cksum out/<dep1>.txt out/<dep2>.txt` does: a restored `packages/<task>/out/
<task>.txt` can be compared with the clab workspace's `out/<task>.txt`. The one extra line
per task that turbo hashes (its package.json) is small.

Standard library only; the output depends only on the input workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

TASK = re.compile(r'^task "([^"]+)" \{$')
DEPS = re.compile(r'^\s+deps (.*)$')
QUOTED = re.compile(r'"([^"]*)"')


def read_tasks(kdl: str) -> dict[str, list[str]]:
    """Task name → its dependencies, in file order, from a tasks.kdl of gen.py."""
    tasks: dict[str, list[str]] = {}
    current: str | None = None
    for line in kdl.splitlines():
        if m := TASK.match(line):
            current = m.group(1)
            tasks[current] = []
        elif current and (m := DEPS.match(line)):
            tasks[current].extend(QUOTED.findall(m.group(1)))
        elif line == "}":
            current = None
    # `all` only gathers every task.
    tasks.pop("all", None)
    return tasks


def build_script(name: str, deps: list[str]) -> str:
    script = f"mkdir -p out && cat src/*.txt > out/{name}.txt"
    if deps:
        script += (
            f" && for d in {' '.join(deps)}; do (cd ../$d && cksum out/$d.txt); done"
            f" >> out/{name}.txt"
        )
    return script


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", required=True, type=Path,
                   help="a workspace written by bench/gen.py (layered mode)")
    p.add_argument("--out", required=True, type=Path, help="monorepo directory to create")
    p.add_argument("--npm-version", default="10.0.0",
                   help="the npm version named in packageManager")
    args = p.parse_args()
    source: Path = args.source
    root: Path = args.out
    if root.exists() and any(root.iterdir()):
        sys.exit(f"gen_turbo.py: {root} exists and is not empty")
    tasks = read_tasks((source / "tasks.kdl").read_text())
    if not tasks:
        sys.exit(f"gen_turbo.py: no tasks in {source / 'tasks.kdl'}")

    packages = root / "packages"
    packages.mkdir(parents=True)
    lock_packages: dict[str, dict] = {
        "": {"name": "bench", "workspaces": ["packages/*"]},
    }
    for name, deps in tasks.items():
        pkg = packages / name
        (pkg / "src").mkdir(parents=True)
        manifest = {
            "name": name,
            "version": "0.0.0",
            "private": True,
            "scripts": {"build": build_script(name, deps)},
        }
        if deps:
            manifest["dependencies"] = {d: "0.0.0" for d in deps}
        (pkg / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        for f in sorted((source / "src" / name).glob("*.txt")):
            link_or_copy(f, pkg / "src" / f.name)
        entry: dict = {"name": name, "version": "0.0.0"}
        if deps:
            entry["dependencies"] = {d: "0.0.0" for d in deps}
        lock_packages[f"packages/{name}"] = entry
        lock_packages[f"node_modules/{name}"] = {"resolved": f"packages/{name}", "link": True}

    (root / "package.json").write_text(json.dumps({
        "name": "bench",
        "private": True,
        "packageManager": f"npm@{args.npm_version}",
        "workspaces": ["packages/*"],
    }, indent=2) + "\n")
    (root / "package-lock.json").write_text(json.dumps({
        "name": "bench",
        "lockfileVersion": 3,
        "requires": True,
        "packages": lock_packages,
    }, indent=2) + "\n")
    (root / "turbo.json").write_text(json.dumps({
        "$schema": "https://turborepo.com/schema.json",
        "tasks": {
            "build": {
                "dependsOn": ["^build"],
                "inputs": ["src/*.txt"],
                "outputs": ["out/**"],
            }
        },
    }, indent=2) + "\n")
    (root / ".gitignore").write_text("out/\n.turbo/\nnode_modules/\n")


if __name__ == "__main__":
    main()
