"""Per-problem time limits, calibrated from the reference solution's own runtime.

A fixed timeout is either too tight for a slow but correct reference (a false failure under
load) or too loose for the rest (an infinite loop costs seconds). Each problem's CPU limit is
FACTOR times its reference's runtime, never below FLOOR_S; the wall clock is a backstop above
it. The limits are stored in the run directory, so a resumed run judges with the same ones.

Calibrating costs one execution per problem. A task whose tests come from its data (LeetCode's,
derived from the statements) pays it up front, because its references must be shown to pass
before a model is judged by those tests. A task with hand-written tests (HumanEval) runs its
samples under the floor first: a program that ends within FLOOR_S would end within any
calibrated limit, so only a problem with a timeout needs its reference run, and only then.
"""

from __future__ import annotations

import dataclasses

from tqdm import tqdm

from harness.records import RunDirectory
from sandbox.base import Limits, Sandbox
from tasks.base import Problem, Task

LIMITS = "limits.json"  # task_id -> Limits, for the problems calibrated so far
REFERENCES = "references.json"  # task_id -> status and detail of the reference solution's run
FLOOR_S = 2.0
FACTOR = 10.0


def calibrate(task: Task, problems: list[Problem], rundir: RunDirectory, sandbox: Sandbox) -> dict[str, Limits]:
    """Calibrate the problems not calibrated yet; return task_id -> Limits for every calibrated one.

    The reference runs are also a check of the tests: their statuses are stored beside the
    limits (reference_statuses()). A problem without a reference, or whose reference fails,
    keeps the floor.
    """
    limits = calibrated_limits(rundir)
    todo = [(p, c) for p in problems if p.task_id not in limits and (c := task.reference_completion(p)) is not None]
    statuses = reference_statuses(rundir)
    for problem in problems:
        limits.setdefault(problem.task_id, floor_limits(task))
    programs = [task.program(p, c) for p, c in todo]
    for index, verdict in tqdm(sandbox.run_batch(programs), total=len(programs), desc="calibrate", unit="program"):
        task_id = todo[index][0].task_id
        statuses[task_id] = {"status": verdict.status, "detail": verdict.detail}
        if verdict.passed:
            limits[task_id] = scaled(programs[index].limits, verdict.duration_s)
    rundir.write_json(REFERENCES, statuses)
    rundir.write_json(LIMITS, {task_id: dataclasses.asdict(lim) for task_id, lim in limits.items()})
    return limits


def calibrated_limits(rundir: RunDirectory) -> dict[str, Limits]:
    """task_id -> Limits of the problems calibrated in this run directory."""
    if not (rundir.path / LIMITS).exists():
        return {}
    return {task_id: Limits(**fields) for task_id, fields in rundir.read_json(LIMITS).items()}


def reference_statuses(rundir: RunDirectory) -> dict[str, dict[str, str]]:
    """task_id -> {"status", "detail"} of its reference's run, for the problems calibrated here."""
    return rundir.read_json(REFERENCES) if (rundir.path / REFERENCES).exists() else {}


def floor_limits(task: Task) -> Limits:
    """The limits of a problem whose reference takes no time: the lowest any calibration gives."""
    return scaled(task.limits, 0.0)


def scaled(base: Limits, reference_s: float) -> Limits:
    cpu = round(max(FLOOR_S, FACTOR * reference_s), 3)
    return dataclasses.replace(base, cpu_time_s=cpu, timeout_s=max(base.timeout_s, 2 * cpu + 2))
