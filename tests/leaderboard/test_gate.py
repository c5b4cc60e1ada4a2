"""`harness gate`: paired per-problem comparison of real runs, its exit codes and its report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from leaderboard.gate import compare, load_snapshot
from leaderboard.stats import bootstrap_mean
from tests.helpers import harness, harness_subprocess
from tests.leaderboard.conftest import evaluate, samples, task_ids

PROBLEMS = 20


@dataclass(frozen=True)
class GateRuns:
    same_a: Path  # canonical solutions
    same_b: Path  # the same samples, evaluated again: an equivalent run
    regressed: Path  # 8 of the 20 problems now answered wrongly
    one_lost: Path  # 1 of 20 wrong: a drop above --max-drop that chance explains
    subset: Path  # 10 of the 20 problems


@pytest.fixture(scope="module")
def gate_runs(tmp_path_factory) -> GateRuns:
    work = tmp_path_factory.mktemp("gate")
    ids = task_ids(PROBLEMS)

    def run(name: str, correct: dict[str, int]) -> Path:
        return evaluate(samples(work / f"{name}.jsonl", correct, 1), work / name)

    canonical = {t: 1 for t in ids}
    return GateRuns(
        same_a=evaluate(samples(work / "canonical.jsonl", canonical, 1), work / "same_a"),
        same_b=evaluate(work / "canonical.jsonl", work / "same_b"),
        regressed=run("regressed", {t: int(i % 5 >= 2) for i, t in enumerate(ids)}),
        one_lost=run("one_lost", {t: int(i != 7) for i, t in enumerate(ids)}),
        subset=run("subset", {t: 1 for t in ids[:10]}),
    )


def gate(*argv: object) -> tuple[int, str]:
    proc = harness_subprocess("gate", *argv)
    return proc.returncode, proc.stdout + proc.stderr


def test_two_equivalent_runs_pass(gate_runs, tmp_path):
    code, out = gate("--baseline", gate_runs.same_a, "--current", gate_runs.same_b, "--report", tmp_path / "r.md")
    assert code == 0, out
    assert "**PASS**" in out and "+0.0000" in out and "Newly failed (0)" in out
    assert (tmp_path / "r.md").read_text() == out


def test_a_planted_regression_fails_and_the_report_names_the_problems(gate_runs, tmp_path):
    report = tmp_path / "report.md"
    code, out = gate("--baseline", gate_runs.same_a, "--current", gate_runs.regressed, "--report", report)
    assert code == 1, out
    lost = [t for i, t in enumerate(task_ids(PROBLEMS)) if i % 5 < 2]
    text = report.read_text()
    assert "**FAIL**" in text and "| baseline" in text and "1.0000" in text and "0.6000" in text
    assert f"Newly failed ({len(lost)})" in text and all(f"`{t}`" in text for t in lost)
    assert "-0.4000" in text and "interval" in text


def test_a_drop_that_chance_explains_passes_unless_every_change_counts(gate_runs):
    code, out = gate("--baseline", gate_runs.same_a, "--current", gate_runs.one_lost)
    assert code == 0, out  # -0.05 is above --max-drop, but 1 problem in 20 is not significant
    assert "within chance" in out and "Newly failed (1)" in out
    code, out = gate("--baseline", gate_runs.same_a, "--current", gate_runs.one_lost, "--max-changed", "0")
    assert code == 1 and "changed outcome" in out and "HumanEval/7" in out
    code, out = gate("--baseline", gate_runs.same_a, "--current", gate_runs.one_lost, "--alpha", "0.8")
    assert code == 1, out  # at a looser level the same drop is significant


def test_max_drop_tolerates_a_significant_but_small_drop(gate_runs):
    code, out = gate("--baseline", gate_runs.same_a, "--current", gate_runs.regressed, "--max-drop", "0.5")
    assert code == 0 and "no regression" in out


def test_a_saved_baseline_gates_like_its_run_directory(gate_runs, tmp_path):
    baseline = tmp_path / "baseline.json"
    assert harness("gate", "--save-baseline", gate_runs.same_a, baseline) == 0
    saved = json.loads(baseline.read_text())
    assert saved["task"] == "humaneval" and len(saved["problems"]) == PROBLEMS
    assert saved["problems"]["HumanEval/0"] == {"correct": 1, "n": 1, "statuses": {"passed": 1}}
    for current, expected in ((gate_runs.same_b, 0), (gate_runs.regressed, 1)):
        from_json = gate("--baseline", baseline, "--current", current)
        from_dir = gate("--baseline", gate_runs.same_a, "--current", current)
        assert from_json[0] == from_dir[0] == expected
        assert from_json[1].replace(str(baseline), str(gate_runs.same_a)) == from_dir[1]


def test_the_interval_is_deterministic_and_paired(gate_runs):
    base, current = load_snapshot(gate_runs.same_a), load_snapshot(gate_runs.regressed)
    first, second = compare(base, current), compare(base, current)
    assert first == second
    low, high = first.interval
    assert low <= first.change <= high < 0
    assert bootstrap_mean([1.0] * 5) == (1.0, 1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--baseline", "{tmp}/missing", "--current", "{a}"), "no such run directory"),
        (("--baseline", "{a}", "--current", "{subset}"), "different problem sets"),
        (("--baseline", "{a}", "--current", "{leetcode}"), "different tasks"),
        (("--baseline", "{a}", "--current", "{b}", "--metric", "bleu"), "--metric must be pass@k"),
        (("--baseline", "{a}", "--current", "{b}", "--metric", "pass@5"), "needs 5 samples per problem"),
        (("--baseline", "{a}", "--current", "{b}", "--alpha", "2"), "--alpha"),
        (
            (
                "--baseline",
                "{a}",
            ),
            "give --baseline BASELINE and --current RUN",
        ),
        (("--baseline", "{notjson}", "--current", "{a}"), "not a baseline JSON"),
        (("--baseline", "{damaged}", "--current", "{a}"), "a damaged baseline"),
        (("--baseline", "{a}", "--current", "{broken}"), "no metrics.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(gate_runs, runs, tmp_path, args, message):
    (tmp_path / "notjson").write_text("{")
    damaged = {"format": "harness-gate-baseline/1", "task": "humaneval", "problems": {"HumanEval/0": {"n": "1"}}}
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    places = dict(
        tmp=tmp_path,
        a=gate_runs.same_a,
        b=gate_runs.same_b,
        subset=gate_runs.subset,
        leetcode=runs.leetcode,
        notjson=tmp_path / "notjson",
        damaged=tmp_path / "damaged.json",
        broken=runs.broken["unfinished"],
    )
    code, out = gate(*(a.format(**places) for a in args))
    assert code == 2 and message in out and out.count("\n") == 1 and "Traceback" not in out, out


def test_incomparable_sampling_settings_are_refused(runs, tiny_checkpoint, tmp_path):
    """Two `harness run`s at different temperatures measure different things."""
    hotter = tmp_path / "hotter"
    flags = ["--limit", "3", "--temperature", "0.8", "--max-new-tokens", "16"]
    assert harness("run", "--model", tiny_checkpoint, "--task", "humaneval", "--out", hotter, *flags) == 0
    code, out = gate("--baseline", runs.tiny, "--current", hotter)
    assert code == 2 and "incomparable settings: sampling" in out, out
