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
from tasks.base import Completion, Problem, Task

LIMITS = "limits.json"
FLOOR_S = 2.0
FACTOR = 10.0


def calibrated_limits(task: Task, problems: list[Problem], rundir: RunDirectory, sandbox: Sandbox) -> dict[str, Limits]:
    """task_id -> Limits for every problem, measured once per run directory."""
    if (rundir.path / LIMITS).exists():
        stored = rundir.read_json(LIMITS)
        return {task_id: Limits(**fields) for task_id, fields in stored.items()}
    references = [p for p in problems if p.reference is not None]
    programs = [task.program(p, Completion(p.task_id, -1, p.reference)) for p in references]
    limits = {p.task_id: task.limits for p in problems}
    for index, verdict in tqdm(sandbox.run_batch(programs), total=len(programs), desc="calibrate", unit="program"):
        if verdict.passed:
            limits[references[index].task_id] = scaled(programs[index], verdict.duration_s)
    rundir.write_json(LIMITS, {task_id: dataclasses.asdict(lim) for task_id, lim in limits.items()})
    return limits


def scaled(program: Program, reference_s: float) -> Limits:
    cpu = round(max(FLOOR_S, FACTOR * reference_s), 3)
    return dataclasses.replace(program.limits, cpu_time_s=cpu, timeout_s=max(program.limits.timeout_s, 2 * cpu + 2))
