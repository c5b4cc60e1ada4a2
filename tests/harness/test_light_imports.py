"""`harness evaluate` and `harness tasks` start fast: no torch, transformers, datasets or ray."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import write_jsonl

HEAVY = ("torch", "transformers", "datasets", "peft", "numpy", "ray")


def test_evaluate_imports_no_heavy_package(tmp_path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"}])
    argv = ["evaluate", "--task", "humaneval", "--samples", str(samples), "--out", str(tmp_path / "r")]
    script = (
        "import sys\n"
        "from harness.cli import main\n"
        f"assert main({argv!r}) == 0\n"
        "assert main(['tasks']) == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
