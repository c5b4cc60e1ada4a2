"""The CodeAlpaca task: rows become problems by index; answers are compared as written."""

from __future__ import annotations

from tasks.codealpaca import CodeAlpaca
from tests.tasks.conftest import DATA

CODEALPACA = DATA / "codealpaca.jsonl"


def test_rows_become_problems_by_index():
    problems = CodeAlpaca(data=str(CODEALPACA)).load()
    assert [p.task_id for p in problems] == [f"CodeAlpaca/{i}" for i in range(8)]
    first = problems[0]
    assert first.prompt.startswith("Create a function to calculate the sum") and first.reference.startswith("# Python")
    assert first.tests is None and not CodeAlpaca().executes(first)


def test_base_models_get_alpacas_template_chat_models_the_instruction():
    problem = CodeAlpaca(data=str(CODEALPACA)).load()[3]
    assert CodeAlpaca().prompt(problem, chat=False) == f"### Instruction:\n{problem.prompt}\n\n### Response:\n"
    assert CodeAlpaca().prompt(problem, chat=True) == problem.prompt


def test_answers_are_cut_at_the_next_instruction_or_taken_from_the_code_block():
    problem = CodeAlpaca(data=str(CODEALPACA)).load()[3]
    task = CodeAlpaca()
    assert task.postprocess(problem, "arr = [2, 4]\n\n### Instruction:\nmore", chat=False) == ("arr = [2, 4]", False)
    chat = "Here it is:\n```python\narr = [2, 4, 6, 8, 10]\n```\nEach number is even."
    assert task.postprocess(problem, chat, chat=True) == ("arr = [2, 4, 6, 8, 10]", False)
    assert task.postprocess(problem, "A list is mutable.", chat=True) == ("A list is mutable.", False)
