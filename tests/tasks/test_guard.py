"""The return-value guard, executed for real in the sandbox."""

from __future__ import annotations

import pytest

from sandbox.process import ProcessSandbox
from tasks.base import Completion
from tasks.humaneval import HumanEval

ALWAYS_EQUAL = """
    class Anything:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
    return Anything()
"""
EQUAL_INT = """
    class Sly(int):
        def __eq__(self, other):
            return True
    return Sly(0)
"""
REDEFINES_GUARD = """
    class Anything:
        def __eq__(self, other):
            return True
    return Anything()

def __harness_guard(fn):
    return fn
"""
PATCHES_TYPE = """
    class Anything:
        def __eq__(self, other):
            return True
    return Anything()

import builtins
builtins.type = lambda value: bool
"""

METACLASS = """
    class Meta(type):
        def __eq__(cls, other):
            return True
        __hash__ = type.__hash__
    class Anything(metaclass=Meta):
        def __eq__(self, other):
            return True
    return Anything()
"""
NESTED = """
    class Anything:
        def __eq__(self, other):
            return True
    return [1, (2, {"k": Anything()})]
"""


def verdicts(bodies: dict[str, str]) -> dict[str, str]:
    task = HumanEval()
    problem = next(p for p in task.load() if p.task_id == "HumanEval/0")
    names = list(bodies)
    programs = [task.program(problem, Completion(problem.task_id, 0, bodies[name].lstrip("\n"))) for name in names]
    with ProcessSandbox(workers=2) as sandbox:
        return {names[index]: verdict.status for index, verdict in sandbox.run_batch(programs)}


@pytest.fixture(scope="module")
def statuses() -> dict[str, str]:
    reference = HumanEval().load()[0].reference
    return verdicts(
        {
            "reference": reference,
            "always_equal": ALWAYS_EQUAL,
            "equal_int_subclass": EQUAL_INT,
            "redefines_guard": REDEFINES_GUARD,
            "patches_type": PATCHES_TYPE,
            "metaclass": METACLASS,
            "nested": NESTED,
        }
    )


def test_plain_values_pass(statuses):
    assert statuses["reference"] == "passed"


@pytest.mark.parametrize(
    "case", ["always_equal", "equal_int_subclass", "redefines_guard", "patches_type", "metaclass", "nested"]
)
def test_objects_that_compare_equal_to_anything_do_not_pass(statuses, case):
    assert statuses[case] == "error"
