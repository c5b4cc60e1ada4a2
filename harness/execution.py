"""Results: every sample gets one row in results.jsonl, with its sentence BLEU.

A sample of an executed problem gets its verdict from the sandbox; one whose problem is scored
by similarity only (the task has no pass@k, the problem has no tests, or its own reference
solution fails them) gets status `not_executed` and the reason. Rows are appended as they come,
so a killed run keeps them and a re-run does only the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from tqdm import tqdm

from harness import registry
from harness.calibration import calibrate, calibrated_limits, floor_limits, reference_statuses
from harness.config import RunConfig
from harness.metrics import similarity
from harness.records import NOT_EXECUTED, RESULTS, SAMPLES, RunDirectory, completion
from sandbox.base import PASSED, SANDBOX_ERROR, TIMEOUT, Limits, Program, Sandbox, Verdict
from tasks.base import Problem, Task


class IncompleteRun(Exception):
    """Some programs could not be executed (the sandbox's fault); a re-run retries them."""


def execute(
    config: RunConfig, task: Task, problems: list[Problem], rundir: RunDirectory, scorer: similarity.Scorer
) -> None:
    """Give every sample without a results row its row."""
    by_id = {p.task_id: p for p in problems}
    done = {(row["task_id"], row["completion_id"]) for row in rundir.read_rows(RESULTS)}
    todo = [row for row in rundir.read_rows(SAMPLES) if (row["task_id"], row["completion_id"]) not in done]
    if not todo:
        return
    executing = [i for i, row in enumerate(todo) if task.executes(by_id[row["task_id"]])]
    failing: dict[str, dict[str, str]] = {}
    with ExitStack() as stack:
        if executing:  # first: the sandbox's workers start while the BLEU scores are computed
            sandbox = stack.enter_context(new_sandbox(config))
        bleu = _sentence_bleu(task, by_id, todo, scorer)
        if executing:
            calibrated = calibrated_limits(rundir)
            if task.check_references:
                calibrated = calibrate(task, [p for p in problems if task.executes(p)], rundir, sandbox)
                # A reference that fails its problem's tests means the tests are wrong, not the models.
                failing = {
                    t: v for t, v in reference_statuses(rundir).items() if v["status"] not in (PASSED, SANDBOX_ERROR)
                }
                executing = [i for i in executing if todo[i]["task_id"] not in failing]
        _record_not_executed(task, by_id, todo, bleu, set(executing), failing, rundir)
        if not executing:
            return
        rows, row_bleu = [todo[i] for i in executing], [bleu[i] for i in executing]
        failures = _execute(task, by_id, rows, row_bleu, calibrated, sandbox, rundir)
    if failures:
        raise IncompleteRun(
            f"{failures} programs could not be executed (sandbox_error); run the same command again to retry them"
        )


def new_sandbox(config: RunConfig) -> Sandbox:
    """config.sandbox on this machine, or (--executor ray) on sandbox actors across a Ray cluster."""
    if config.executor == "ray":
        from harness.cluster.execution import RayExecutor

        return RayExecutor(config.sandbox, config.workers, address=config.ray_address)
    return registry.sandboxes.get(config.sandbox)(workers=config.workers)


def _execute(
    task: Task,
    by_id: dict[str, Problem],
    rows: list[dict[str, Any]],
    bleu: list[float | None],
    calibrated: dict[str, Limits],
    sandbox: Sandbox,
    rundir: RunDirectory,
) -> int:
    """Run the rows' programs and record their verdicts; return how many the sandbox could not run.

    A problem not calibrated yet runs under the floor limits (harness/calibration.py); a timeout
    there is held back until its problem is calibrated, then stands, or runs again under a
    higher calibrated limit.
    """
    floor = floor_limits(task)

    def programs(indices: list[int]) -> list[Program]:
        return [
            _program(task, by_id[rows[i]["task_id"]], rows[i], calibrated.get(rows[i]["task_id"], floor))
            for i in indices
        ]

    def provisional(index: int, verdict: Verdict) -> bool:
        return verdict.status == TIMEOUT and rows[index]["task_id"] not in calibrated

    everything = list(range(len(rows)))
    failures, held = _record_verdicts(programs(everything), everything, rows, bleu, sandbox, rundir, provisional)
    if held:
        timed_out = dict.fromkeys(rows[i]["task_id"] for i, _ in held)
        calibrated = calibrate(task, [by_id[t] for t in timed_out], rundir, sandbox)
        again = [i for i, _ in held if calibrated[rows[i]["task_id"]] != floor]
        with rundir.appender(RESULTS) as out:
            for index, verdict in held:
                if index not in again:
                    out.write(_verdict_row(rows[index], bleu[index], verdict))
        failures += _record_verdicts(programs(again), again, rows, bleu, sandbox, rundir)[0]
    return failures


def _program(task: Task, problem: Problem, row: dict[str, Any], limits: Limits) -> Program:
    return dataclasses.replace(task.program(problem, completion(row)), limits=limits)


def _sentence_bleu(
    task: Task, by_id: dict[str, Problem], rows: list[dict[str, Any]], scorer: similarity.Scorer
) -> list[float | None]:
    """Sentence BLEU of each row against its problem's reference (None: no reference, or the
    task is not scored by BLEU). The scorer starts on the corpus statistics meanwhile."""
    if "bleu" not in task.metrics:
        return [None] * len(rows)
    pairs = [task.similarity_pair(by_id[row["task_id"]], completion(row)) for row in rows]
    scored = [i for i, pair in enumerate(pairs) if pair is not None]
    predictions, references = [pairs[i][0] for i in scored], [pairs[i][1] for i in scored]
    scorer.prefetch(predictions, references)
    out: list[float | None] = [None] * len(rows)
    for i, value in zip(scored, similarity.sentence_bleu(predictions, references)):
        out[i] = round(value, 4)
    return out


def _record_not_executed(
    task: Task,
    by_id: dict[str, Problem],
    todo: list[dict[str, Any]],
    bleu: list[float | None],
    executing: set[int],
    failing: dict[str, dict[str, str]],
    rundir: RunDirectory,
) -> None:
    """Append a `not_executed` row, with the reason, for each sample scored by similarity only."""
    with rundir.appender(RESULTS) as out:
        for index, (row, value) in enumerate(zip(todo, bleu)):
            if index not in executing:
                reason = _reason(task, by_id[row["task_id"]], failing)
                out.write(_row(row, value, status=NOT_EXECUTED, detail=reason))


def _reason(task: Task, problem: Problem, failing: dict[str, dict[str, str]]) -> str:
    if problem.task_id in failing:
        verdict = failing[problem.task_id]
        return f"the reference solution fails the problem's tests ({verdict['status']}: {verdict['detail']})"
    if "pass@k" not in task.metrics:
        return "the task is scored by similarity only"
    return problem.metadata.get("not_executed", "the problem has no tests")


def _row(sample: dict[str, Any], bleu: float | None, **fields: Any) -> dict[str, Any]:
    row = {"task_id": sample["task_id"], "completion_id": sample["completion_id"], **fields}
    if bleu is not None:
        row["bleu"] = bleu
    return row


def _record_verdicts(
    programs: list[Program],
    indices: list[int],
    rows: list[dict[str, Any]],
    bleu: list[float | None],
    sandbox: Sandbox,
    rundir: RunDirectory,
    hold: Callable[[int, Verdict], bool] = lambda index, verdict: False,
) -> tuple[int, list[tuple[int, Verdict]]]:
    """Run `programs` (those of rows[indices]) and append a results row per verdict, except the
    ones `hold` keeps back; return how many the sandbox could not run, and the held verdicts."""
    failures, held = 0, []
    with rundir.appender(RESULTS) as out, tqdm(total=len(programs), desc="execute", unit="program") as bar:
        for position, verdict in sandbox.run_batch(programs):
            bar.update()
            index = indices[position]
            if verdict.status == SANDBOX_ERROR:
                failures += 1  # not recorded: the model is not to blame, and a re-run retries it
            elif hold(index, verdict):
                held.append((index, verdict))
            else:
                out.write(_verdict_row(rows[index], bleu[index], verdict))
    return failures, held


def _verdict_row(sample: dict[str, Any], bleu: float | None, verdict: Verdict) -> dict[str, Any]:
    fields = {
        "passed": verdict.passed,
        "status": verdict.status,
        "detail": verdict.detail,
        "duration_s": round(verdict.duration_s, 4),
    }
    return _row(sample, bleu, **fields)
