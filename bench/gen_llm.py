"""Generate an LLM-overhead workspace: N LLM steps on the `command` provider (a shell line
that answers at once), so a warm run measures what a cached LLM node costs the engine.

    python3 bench/gen_llm.py DIR --nodes 1000
"""

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    root = Path(args.dir)
    (root / "spec").mkdir(parents=True, exist_ok=True)
    for n in range(args.nodes):
        (root / "spec" / f"s{n:04}.md").write_text(f"Module {n}: return {n}.\n")
    (root / "prompts").mkdir(exist_ok=True)
    (root / "prompts" / "gen.md").write_text("Write {{file}} as code.\n\n{{context}}\n")
    (root / "tasks.kdl").write_text(
        """llm {
    provider "command"
    command "cat > /dev/null; printf '```\\\\nx = 1\\\\n```\\\\n'"
    model "bench"
}
task "gen" {
    for-each "spec/*.md"
    llm {
        prompt-file "prompts/gen.md"
        context "{{file}}"
        output "gen/{{stem}}.py"
    }
}
task "default" { deps "gen"; }
"""
    )


if __name__ == "__main__":
    main()
