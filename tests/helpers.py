"""Helpers for tests: the CLI in process or as a subprocess, and JSONL files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.cli import main


def harness(*argv: object) -> int:
    """Run the CLI in process and return its exit code."""
    return main([str(a) for a in argv])


def harness_subprocess(*argv: object, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, argv)], capture_output=True, text=True, **kwargs
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return Path(path)
