"""Per-problem time limits, calibrated from the reference solution's own runtime.

A fixed timeout is either too tight for a slow but correct reference (a false failure under
load) or too loose for the rest (an infinite loop costs seconds). Each problem's CPU limit is
FACTOR times its reference's runtime, never below FLOOR_S; the wall clock is a backstop above
it. The limits are stored in the run directory, so a resumed run judges with the same ones.
"""

from __future__ import annotations

import dataclasses

from tqdm import tqdm

from harness.records import RunDirectory
from sandbox.base import Limits, Program, Sandbox
from tasks.base import Problem, Task

LIMITS = "limits.json"
REFERENCES = "references.json"  # task_id -> status and detail of the reference solution's run
FLOOR_S = 2.0
FACTOR = 10.0


def calibrated_limits(task: Task, problems: list[Problem], rundir: RunDirectory, sandbox: Sandbox) -> dict[str, Limits]:
    """task_id -> Limits for every problem, measured once per run directory.

    The reference runs are also a check of the tests: their statuses are stored beside the
    limits (reference_statuses()), and a problem whose reference fails is not executed.
    """
    if (rundir.path / LIMITS).exists():
        stored = rundir.read_json(LIMITS)
        return {task_id: Limits(**fields) for task_id, fields in stored.items()}
    references = [(p, c) for p in problems if (c := task.reference_completion(p)) is not None]
    programs = [task.program(p, c) for p, c in references]
    limits = {p.task_id: task.limits for p in problems}
    statuses = {}
    for index, verdict in tqdm(sandbox.run_batch(programs), total=len(programs), desc="calibrate", unit="program"):
        task_id = references[index][0].task_id
        statuses[task_id] = {"status": verdict.status, "detail": verdict.detail}
        if verdict.passed:
            limits[task_id] = scaled(programs[index], verdict.duration_s)
    rundir.write_json(REFERENCES, statuses)
    rundir.write_json(LIMITS, {task_id: dataclasses.asdict(lim) for task_id, lim in limits.items()})
    return limits


def reference_statuses(rundir: RunDirectory) -> dict[str, dict[str, str]]:
    """task_id -> {"status", "detail"} of its reference's run, for the problems calibrated here."""
    return rundir.read_json(REFERENCES) if (rundir.path / REFERENCES).exists() else {}


def scaled(program: Program, reference_s: float) -> Limits:
    cpu = round(max(FLOOR_S, FACTOR * reference_s), 3)
    return dataclasses.replace(program.limits, cpu_time_s=cpu, timeout_s=max(program.limits.timeout_s, 2 * cpu + 2))
