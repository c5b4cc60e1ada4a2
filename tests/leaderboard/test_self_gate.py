"""The project gating itself: a change to the harness that shifts any verdict fails this test.

tests/data/gate/humaneval_samples.jsonl holds HumanEval's 164 canonical solutions and 16
known-wrong completions, one of each kind (a wrong value, an exception, a syntax error, an endless
loop, an 80 GB allocation, sys.exit and os._exit before the tests end, an object equal to
everything, a printed "passed", ...). humaneval_baseline.json holds the verdicts they got, written
by `harness gate --save-baseline`. The gate runs with --max-changed 0: a false pass, a false fail or
a status that moves (failed -> error, timeout -> crashed) is a regression here.

After an intended change of verdicts, regenerate the baseline and review its diff:

    harness evaluate --task humaneval --samples tests/data/gate/humaneval_samples.jsonl --out /tmp/self
    harness gate --save-baseline /tmp/self tests/data/gate/humaneval_baseline.json
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import harness_subprocess

DATA = Path(__file__).parents[1] / "data" / "gate"


@pytest.mark.slow
def test_our_own_verdicts_match_the_committed_baseline(tmp_path):
    run = tmp_path / "self"
    samples = DATA / "humaneval_samples.jsonl"
    proc = harness_subprocess("evaluate", "--task", "humaneval", "--samples", samples, "--out", run)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "gate.md"
    baseline = DATA / "humaneval_baseline.json"
    proc = harness_subprocess(
        "gate", "--baseline", baseline, "--current", run, "--max-changed", "0", "--report", report
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "**PASS**" in report.read_text()
