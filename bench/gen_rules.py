"""Generate a rules benchmark workspace: N source files and R rules with one regex each.

    python3 bench/gen_rules.py DIR --files 10000 --rules 20

Writes DIR/src/dNN/fNNNNN.py (deterministic content, ~40 lines each), DIR/.cursor/rules/
rNN.mdc (a suggest rule whose condition is a regex that matches a few files), DIR/tasks.kdl,
and DIR/patterns.txt (the same regexes, one per line, for `rg -f`).
"""

import argparse
import random
from pathlib import Path

WORDS = "alpha beta gamma delta value result index count total item node path".split()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=20)
    args = parser.parse_args()
    root = Path(args.dir)
    rng = random.Random(7)
    for n in range(args.files):
        path = root / "src" / f"d{n % 100:02}" / f"f{n:05}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"def fn_{n}_{i}({rng.choice(WORDS)}):" if i % 4 == 0 else
                 f"    {rng.choice(WORDS)} = {rng.choice(WORDS)}_{rng.randrange(1000)}"
                 for i in range(40)]
        if n % 500 == 0:
            lines.append(f"    forbidden_call_{n % 20}()")
        path.write_text("\n".join(lines) + "\n")
    rules = root / ".cursor" / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    patterns = []
    for r in range(args.rules):
        pattern = rf"forbidden_call_{r}\("
        patterns.append(pattern)
        (rules / f"r{r:02}.mdc").write_text(
            f"""---
description: Benchmark rule {r}
globs: *.py
---
<rule>
name: bench-{r:02}
filters:
  - type: file_extension
    pattern: "\\\\.py$"
actions:
  - type: suggest
    conditions:
      - pattern: "{pattern.replace(chr(92), chr(92) * 2)}"
        message: "forbidden call {r}"
</rule>
"""
        )
    (root / "patterns.txt").write_text("\n".join(patterns) + "\n")
    (root / "tasks.kdl").write_text('task "default" { deps "rules"; }\n')


if __name__ == "__main__":
    main()
