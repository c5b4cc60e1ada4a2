"""Training data: rows -> the task's own problems -> (prompt, answer) -> tokens with the prompt masked.

Training and evaluation agree by construction. The rows are loaded by the task plugin itself
(the hub's training split, or --data with the task's columns), each prompt is `task.prompt(problem,
chat)` exactly as `harness run` sends it, and the answer trained on is one that the task's own
post-processing turns back into the problem's reference (for a base model the continuation of the
prompt, for a chat model a code block where the reference is Python). The tokens are those the hf
backend feeds the model: the prompt encoded alone (with the chat template where chat is used), then
the answer and EOS, which alone carry loss.

Contamination guard: a training problem whose prompt or reference equals, after normalisation (case
and whitespace), the prompt or reference of an evaluation problem of the task, of --eval-task or of
--guard-tasks (HumanEval by default) is dropped and counted. The task's evaluation split itself is
never a training source.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import registry
from harness.errors import UsageError
from tasks.base import Completion, Problem, Task
from tasks.data import Source, data_sha256, load_rows

# The recipes' row formats and the task whose columns (or prompt format) they carry.
RECIPE_FORMATS = {("prompt", "completion"): "codealpaca", ("docstring", "code"): "codesearchnet"}
# The hub split each task trains on; it is never the split the task evaluates. LeetCode's dataset
# has one split, which the task evaluates: it trains only on --data.
TRAIN_SPLITS = {"codealpaca": "train", "codesearchnet": "train"}
PROBE_SIZE = 32  # training examples whose loss is measured before and after training
VALIDATION_SHARE, VALIDATION_MAX = 0.05, 200  # held out when --eval-every is given


@dataclass(frozen=True)
class Example:
    """One training pair: the prompt as the task formats it, and the answer trained on."""

    task_id: str
    prompt: str  # task.prompt(problem, chat): the user message when chat is used
    answer: str


@dataclass
class TrainingSet:
    """Tokenized rows ({"input_ids", "completion_mask"}) and what happened to the data on the way."""

    train: list[dict[str, list[int]]]
    validation: list[dict[str, list[int]]]
    probe: list[dict[str, list[int]]]
    report: dict[str, Any] = field(default_factory=dict)


def build(config: Any, tokenizer: Any, chat: bool) -> TrainingSet:
    """The tokenized training (and validation) rows of a resolved FinetuneConfig."""
    task = registry.tasks.get(config.task)()
    problems, report = training_problems(config)
    evaluation = {
        name: evaluation_problems(name, config.guard_data if name == config.task else None)
        for name in guarded_tasks(config)
    }
    kept, contaminated = guard(problems, task, evaluation)
    examples = [e for e in (example(task, p, chat) for p in kept) if e is not None]
    rows, too_long = tokenize(examples, tokenizer, chat, config.max_seq_len)
    if not rows:
        raise UsageError(f"no training example is left of {report['rows']} rows ({_counts(contaminated, too_long)})")
    train, validation = split_validation(rows, config.eval_every is not None, config.seed)
    report.update(
        contaminated=contaminated,
        unusable=len(kept) - len(examples),
        too_long=too_long,
        examples=len(train),
        validation=len(validation),
        examples_sha256=hashlib.sha256(json.dumps([(e.prompt, e.answer) for e in examples]).encode()).hexdigest(),
        chat=chat,
    )
    return TrainingSet(train=train, validation=validation, probe=train[:PROBE_SIZE], report=report)


def guarded_tasks(config: Any) -> list[str]:
    """The tasks whose evaluation problems are kept out of training: the task's own, --eval-task's, --guard-tasks."""
    return list(dict.fromkeys([config.task, *([config.eval_task] if config.eval_task else []), *config.guard_tasks]))


def recipe_task(path: str) -> str | None:
    """The task a file in one of the recipes' formats trains for (None: another format)."""
    columns = set(_read_rows(path)[0])
    for format_columns, task in RECIPE_FORMATS.items():
        if set(format_columns) <= columns:
            return task
    return None


def training_problems(config: Any) -> tuple[list[Problem], dict[str, Any]]:
    """The task's problems built from the training rows, and where they came from."""
    cls = registry.tasks.get(config.task)
    if config.data is None:
        split = TRAIN_SPLITS.get(config.task)
        if split is None:
            raise UsageError(
                f"{config.task} has no training split apart from the problems it evaluates; "
                "pass --data FILE with training rows (rows matching its evaluation problems are dropped)"
            )
        problems = cls(split=split).load()
        return problems, {"source": f"hub:{config.task}", "split": split, "sha256": None, "rows": len(problems)}
    with tempfile.TemporaryDirectory() as scratch:
        path = _in_task_columns(config.data, config.task, Path(scratch))
        try:
            problems = cls(data=path, split=_folder_split(path)).load()
        except UsageError as exc:
            raise UsageError(f"{exc}{_format_hint(config.data, config.task)}") from None
    report = {"source": str(Path(config.data).resolve()), "split": None, "sha256": data_sha256(config.data)}
    return problems, {**report, "rows": len(problems)}


def evaluation_problems(name: str, data: str | None) -> list[Problem]:
    """The evaluation split of a task (its default split, or a local copy), for the guard."""
    try:
        return registry.tasks.get(name)(data=data).load()
    except UsageError as exc:
        where = "" if data else " (or pass --guard-data FILE, a local copy of the task's evaluation split)"
        raise UsageError(f"contamination guard: cannot load {name}'s evaluation problems: {exc}{where}") from None


def guard(
    problems: list[Problem], task: Task, evaluation: dict[str, list[Problem]]
) -> tuple[list[Problem], dict[str, int]]:
    """(the problems that match no evaluation problem, the number dropped per guarding task)."""
    keys = {name: set(_keys(registry.tasks.get(name)(), probs)) for name, probs in evaluation.items()}
    kept, dropped = [], {name: 0 for name in evaluation}
    for problem in problems:
        own = set(_keys(task, [problem]))
        hit = next((name for name, theirs in keys.items() if own & theirs), None)
        if hit is None:
            kept.append(problem)
        else:
            dropped[hit] += 1
    return kept, dropped


def normalise(text: str) -> str:
    """Text compared by the guard: case and runs of whitespace do not count."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def example(task: Task, problem: Problem, chat: bool) -> Example | None:
    """The (prompt, answer) pair of a problem; None when no answer reproduces its reference."""
    reference = task.reference_text(problem)
    if reference is None:
        return None
    if not chat:
        # What the task puts before a continuation when it compares it with the reference (the
        # signature for whole-function references). Lines above it (imports, helper classes) are
        # beyond what a continuation can write: the best it can reach is the reference from there on.
        prefix = task.prediction_text(problem, Completion(problem.task_id, 0, ""))
        at = reference.find(prefix)
        if at == -1:
            return None
        reference = reference[at:]
        candidates: Iterable[str] = [reference[len(prefix) :]]
    else:
        candidates = _chat_answers(task, problem, reference)
    for answer in candidates:
        if _reproduces(task, problem, answer, chat, reference):
            return Example(problem.task_id, task.prompt(problem, chat), answer)
    return None


def tokenize(examples: list[Example], tokenizer: Any, chat: bool, max_len: int) -> tuple[list[dict], int]:
    """Rows of input_ids and completion_mask (1 on the answer and EOS); a prompt that fills max_len is dropped."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    prompts = [render(tokenizer, e.prompt, chat) for e in examples]
    # The prompt alone, encoded as the hf backend encodes it (special tokens unless the chat template adds them).
    prompt_ids = tokenizer(prompts, add_special_tokens=not chat)["input_ids"] if prompts else []
    answer_ids = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"] if examples else []
    rows, too_long = [], 0
    for prompt, answer in zip(prompt_ids, answer_ids):
        if len(prompt) >= max_len:
            too_long += 1
            continue
        ids = (prompt + answer + eos)[:max_len]
        rows.append({"input_ids": ids, "completion_mask": [0] * len(prompt) + [1] * (len(ids) - len(prompt))})
    return rows, too_long


def render(tokenizer: Any, prompt: str, chat: bool) -> str:
    """The text the model sees before its answer, as harness/backends/hf.py renders it."""
    if not chat:
        return prompt
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def split_validation(rows: list[dict], hold_out: bool, seed: int) -> tuple[list[dict], list[dict]]:
    """(training rows, validation rows): a seeded 5% (at most 200) is held out when asked."""
    if not hold_out:
        return rows, []
    if len(rows) < 2:
        raise UsageError("--eval-every needs at least 2 examples (one is held out for validation)")
    size = max(1, min(VALIDATION_MAX, round(len(rows) * VALIDATION_SHARE)))
    held = set(random.Random(seed).sample(range(len(rows)), size))
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def _chat_answers(task: Task, problem: Problem, reference: str) -> Iterator[str]:
    """Candidate chat answers, the most natural first: the whole program in a Python code block
    (where it is Python), then the reference as it is."""
    whole = task.reference_completion(problem)
    programs = [whole.text] if whole and whole.full_program else [problem.prompt + (whole.text if whole else "")]
    for program in [*programs, reference]:
        if _is_python(program):
            yield f"```python\n{program.strip()}\n```"
    yield reference


def _reproduces(task: Task, problem: Problem, answer: str, chat: bool, reference: str) -> bool:
    """Whether the task, post-processing `answer` as a model's output, scores it equal to the reference."""
    text, full = task.postprocess(problem, answer, chat)
    predicted = task.prediction_text(problem, Completion(problem.task_id, 0, text, full_program=full))
    return predicted.split() == reference.split()


def _keys(task: Task, problems: Iterable[Problem]) -> Iterator[str]:
    for problem in problems:
        reference = task.reference_text(problem) or ""
        for text in (problem.prompt, reference, problem.prompt + reference):
            key = normalise(text)
            if key:
                yield key


def _is_python(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return bool(code.strip())


def _read_rows(path: str) -> list[dict[str, Any]]:
    """The rows of any file --data accepts, whatever its columns."""
    return load_rows(Source(hub=path, columns=(), split="train"), path)


def _in_task_columns(path: str, task: str, scratch: Path) -> str:
    """`path`, or a copy in the task's columns when it holds {"docstring", "code"} rows for codesearchnet."""
    if task != "codesearchnet":
        return path
    rows = _read_rows(path)
    if not {"docstring", "code"} <= set(rows[0]) or "func_code_string" in rows[0]:
        return path
    converted = scratch / "codesearchnet.jsonl"
    with open(converted, "w") as out:
        for row in rows:
            name = re.search(r"def\s+(\w+)", row["code"] or "")
            columns = {
                "func_name": name.group(1) if name else "",
                "func_code_string": row["code"] or "",
                "func_documentation_string": row["docstring"] or "",
            }
            out.write(json.dumps(columns) + "\n")
    return str(converted)


def _folder_split(path: str) -> str | None:
    """A saved DatasetDict trains on its "train" split (its default split is the evaluated one)."""
    if not Path(path).is_dir():
        return None
    import datasets

    return "train" if isinstance(datasets.load_from_disk(path), datasets.DatasetDict) else None


def _format_hint(path: str, task: str) -> str:
    try:
        other = recipe_task(path)
    except UsageError:
        return ""
    return f"; its rows are {other}'s format: use --task {other}" if other and other != task else ""


def _counts(contaminated: dict[str, int], too_long: int) -> str:
    parts = [f"{n} matched {name}'s evaluation problems" for name, n in contaminated.items() if n]
    return ", ".join(parts + ([f"{too_long} prompts longer than --max-seq-len"] if too_long else [])) or "none usable"
