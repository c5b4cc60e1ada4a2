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


@pytest.fixture
def spin_task():
    registry.tasks.register("spin", Spin)
    yield
    registry.tasks.unregister("spin")


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


def test_unknown_task_lists_the_registered_throwaway_plugin(spin_task, capsys, tmp_path):
    assert harness("evaluate", "--task", "spn", "--samples", tmp_path / "x.jsonl") == 2
    assert "did you mean 'spin'?" in capsys.readouterr().err
