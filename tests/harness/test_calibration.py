"""Per-problem limits from the reference solution's runtime, with a throw-away task plugin."""

from __future__ import annotations

import json

import pytest

from harness import registry
from harness.calibration import FACTOR, FLOOR_S
from sandbox.base import Program
from tasks.base import Completion, Problem, Task
from tests.helpers import harness, write_jsonl

BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end:\n    pass\n"


class Spin(Task):
    """Two problems: one whose reference is instant, one whose reference burns 0.4 s of CPU."""

    name = "spin"
    description = "test task"

    def load(self) -> list[Problem]:
        # The program is the completion alone; `tests` only marks the problems as executed.
        return [
            Problem("Spin/fast", "", reference=BUSY.format(seconds=0), tests=""),
            Problem("Spin/slow", "", reference=BUSY.format(seconds=0.4), tests=""),
        ]

    def program(self, problem: Problem, completion: Completion) -> Program:
        return Program(completion.text, self.limits)


class LazySpin(Spin):
    """The same problems with trusted tests: references run only when a timeout needs them."""

    name = "lazy-spin"
    check_references = False


@pytest.fixture
def spin_task():
    registry.tasks.register("spin", Spin)
    registry.tasks.register("lazy-spin", LazySpin)
    yield
    registry.tasks.unregister("spin")
    registry.tasks.unregister("lazy-spin")


def test_limits_follow_the_reference_runtime_and_are_stored(spin_task, tmp_path):
    samples = write_jsonl(
        tmp_path / "s.jsonl", [{"task_id": t, "solution": "x = 1\n"} for t in ("Spin/fast", "Spin/slow")]
    )
    assert harness("evaluate", "--task", "spin", "--samples", samples, "--out", tmp_path / "run") == 0
    limits = json.loads((tmp_path / "run" / "limits.json").read_text())
    assert limits["Spin/fast"]["cpu_time_s"] == FLOOR_S
    assert FACTOR * 0.4 <= limits["Spin/slow"]["cpu_time_s"] < FACTOR * 2.0
    for fields in limits.values():
        assert fields["timeout_s"] > fields["cpu_time_s"]


def test_trusted_tests_calibrate_only_the_problems_whose_samples_time_out(spin_task, tmp_path):
    # The slow problem's limit is about 4 s: a sample burning 2.5 s times out under the floor,
    # then passes when run again under its problem's calibrated limit.
    rows = [
        {"task_id": "Spin/fast", "solution": "x = 1\n"},
        {"task_id": "Spin/slow", "solution": BUSY.format(seconds=FLOOR_S + 0.5)},
        {"task_id": "Spin/slow", "solution": "while True:\n    pass\n"},
    ]
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    assert harness("evaluate", "--task", "lazy-spin", "--samples", samples, "--out", tmp_path / "run") == 0
    limits = json.loads((tmp_path / "run" / "limits.json").read_text())
    assert list(limits) == ["Spin/slow"]
    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    statuses = sorted((r["task_id"], r["completion_id"], r["status"]) for r in results)
    assert statuses == [("Spin/fast", 0, "passed"), ("Spin/slow", 0, "passed"), ("Spin/slow", 1, "timeout")]


def test_unknown_task_lists_the_registered_throwaway_plugin(spin_task, capsys, tmp_path):
    assert harness("evaluate", "--task", "spn", "--samples", tmp_path / "x.jsonl") == 2
    assert "did you mean 'spin'" in capsys.readouterr().err
