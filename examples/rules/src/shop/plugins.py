"""Optional plugins, installed on demand."""

import subprocess


def ensure_plugin(name: str) -> None:
    """Install plugin `name` if it is missing."""
    subprocess.run(["pip", "install", name], check=True)
