"""Training data: prompts as the tasks format them, answers the tasks score as the reference,
the contamination guard, and tokens whose prompt part carries no loss. No training here."""

from __future__ import annotations

import ast

import pytest

from finetune import data
from finetune.config import FinetuneConfig
from harness import registry
from harness.errors import UsageError
from tasks.base import Completion
from tests.helpers import read_jsonl, write_jsonl
from tests.tasks.conftest import DATA

TRAIN = DATA / "codealpaca_train.jsonl"


def config(**fields) -> FinetuneConfig:
    """A config as resolved() leaves it (task named), without touching a device or a folder."""
    return FinetuneConfig(**{"base": "unused", "out": "unused", "task": "codealpaca", **fields})


def answer_scores_as_reference(task, problem, example, chat) -> bool:
    """What `harness run` would score if the model produced exactly the trained answer."""
    text, full = task.postprocess(problem, example.answer, chat)
    predicted = task.prediction_text(problem, Completion(problem.task_id, 0, text, full_program=full))
    return predicted.split() == task.reference_text(problem).split()


@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize(
    "name, fixture",
    [("codealpaca", "codealpaca.jsonl"), ("codesearchnet", "codesearchnet.jsonl"), ("leetcode", "leetcode.jsonl")],
)
def test_prompt_is_the_tasks_own_and_the_answer_post_processes_to_the_reference(name, fixture, chat):
    task = registry.tasks.get(name)(data=str(DATA / fixture))
    problems = task.load()
    examples = [data.example(task, p, chat) for p in problems]
    # Only a chat answer with Python 2 code has no form the task scores as its reference (it never
    # parses as the whole function).
    assert all(e is not None or chat and not _parses(p.reference) for p, e in zip(problems, examples))
    for problem, example in ((p, e) for p, e in zip(problems, examples) if e is not None):
        assert example.prompt == task.prompt(problem, chat)
        assert answer_scores_as_reference(task, problem, example, chat) or not chat and _after_preamble(problem)


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _after_preamble(problem) -> bool:
    """A LeetCode reference with imports or a helper class above its function: a continuation of the
    prompt (which starts at the signature) reaches only the part from the signature on."""
    return not problem.reference.startswith(problem.metadata["signature"])


def test_a_leetcode_continuation_after_imports_is_the_body_after_the_signature():
    task = registry.tasks.get("leetcode")(data=str(DATA / "leetcode.jsonl"))
    problem = next(p for p in task.load() if p.task_id == "LeetCode/49")
    example = data.example(task, problem, chat=False)
    assert problem.reference.startswith("from collections import defaultdict")
    assert problem.reference.endswith(problem.metadata["signature"] + "\n" + example.answer)


def test_a_base_model_continues_the_prompt_instead_of_repeating_the_signature():
    task = registry.tasks.get("codesearchnet")(data=str(DATA / "codesearchnet.jsonl"))
    problem = task.load()[0]
    example = data.example(task, problem, chat=False)
    assert example.prompt == problem.prompt  # signature and docstring
    assert problem.metadata["signature"] + example.answer == problem.reference


def test_a_chat_model_answers_humaneval_with_the_whole_function_in_a_code_block():
    task = registry.tasks.get("humaneval")()
    problem = task.load()[0]
    example = data.example(task, problem, chat=True)
    assert example.answer.startswith("```python\n") and example.answer.endswith("\n```")
    assert problem.prompt.strip() in example.answer and "Reply with the whole function" in example.prompt


def test_the_guard_drops_the_planted_duplicates_and_counts_them():
    task = registry.tasks.get("codealpaca")(data=str(TRAIN))
    problems = task.load()
    evaluation = {
        "codealpaca": data.evaluation_problems("codealpaca", str(DATA / "codealpaca.jsonl")),
        "humaneval": data.evaluation_problems("humaneval", None),
    }
    kept, dropped = data.guard(problems, task, evaluation)
    assert dropped == {"codealpaca": 1, "humaneval": 1}
    assert len(kept) == len(problems) - 2
    kept_prompts = {data.normalise(p.prompt) for p in kept}
    assert "generate a python code snippet to check if a given string is a palindrome." not in kept_prompts
    assert not any("truncate_number" in p.prompt for p in kept)


def test_the_guard_ignores_case_and_whitespace_only():
    assert data.normalise("  Def  F(x):\n\treturn X ") == data.normalise("def f(x): return x")
    assert data.normalise("def f(x): return x") != data.normalise("def f(y): return y")


def test_build_reports_what_it_dropped(tiny_tokenizer):
    built = data.build(config(data=str(TRAIN), guard_data=str(DATA / "codealpaca.jsonl")), tiny_tokenizer, False)
    report = built.report
    assert report["rows"] == 16 and report["contaminated"] == {"codealpaca": 1, "humaneval": 1}
    assert report["examples"] == len(built.train) == 14 and report["validation"] == 0
    assert len(report["sha256"]) == 64 and len(report["examples_sha256"]) == 64


def test_eval_every_holds_rows_out_of_training(tiny_tokenizer):
    cfg = config(data=str(TRAIN), guard_data=str(DATA / "codealpaca.jsonl"), eval_every=5)
    built = data.build(cfg, tiny_tokenizer, False)
    assert len(built.validation) == 1 and len(built.train) == 13
    assert built.validation[0] not in built.train


def test_prompt_tokens_are_masked_and_encoded_as_the_backend_encodes_them(tiny_tokenizer):
    task = registry.tasks.get("codealpaca")(data=str(TRAIN))
    examples = [data.example(task, p, False) for p in task.load()[:3]]
    rows, too_long = data.tokenize(examples, tiny_tokenizer, False, 512)
    assert too_long == 0
    for example, row in zip(examples, rows):
        prompt = tiny_tokenizer(example.prompt)["input_ids"]  # as harness/backends/hf.py encodes a raw prompt
        answer = tiny_tokenizer(example.answer, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
        assert row["input_ids"] == prompt + answer
        assert row["completion_mask"] == [0] * len(prompt) + [1] * len(answer)


def test_a_prompt_longer_than_max_seq_len_is_dropped_a_long_answer_cut(tiny_tokenizer):
    examples = [data.Example("a", "word " * 40, "x"), data.Example("b", "short", "y " * 40)]
    rows, too_long = data.tokenize(examples, tiny_tokenizer, False, 16)
    assert too_long == 1 and len(rows) == 1
    assert len(rows[0]["input_ids"]) == 16 and rows[0]["completion_mask"][0] == 0


def test_docstring_code_rows_train_codesearchnet(tmp_path):
    rows = [{"docstring": "Add two numbers.", "code": "def add(a, b):\n    return a + b\n"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert data.recipe_task(str(path)) == "codesearchnet"
    problems, report = data.training_problems(config(task="codesearchnet", data=str(path)))
    assert problems[0].prompt == 'def add(a, b):\n    """Add two numbers."""\n'
    assert problems[0].entry_point == "add" and report["rows"] == 1


def test_prompt_completion_rows_name_codealpaca():
    assert data.recipe_task(str(TRAIN)) == "codealpaca"
    assert read_jsonl(TRAIN)[0].keys() == {"prompt", "completion"}


def test_rows_of_another_tasks_format_get_a_hint():
    with pytest.raises(UsageError, match="use --task codealpaca"):
        data.training_problems(config(task="codesearchnet", data=str(DATA / "codealpaca.jsonl")))


def test_a_task_without_a_training_split_needs_data():
    with pytest.raises(UsageError, match="leetcode has no training split"):
        data.training_problems(config(task="leetcode"))


def test_nothing_left_to_train_on_is_one_clear_error(tiny_tokenizer, tmp_path):
    duplicates = write_jsonl(tmp_path / "dup.jsonl", read_jsonl(DATA / "codealpaca.jsonl"))
    cfg = config(data=str(duplicates), guard_data=str(DATA / "codealpaca.jsonl"))
    with pytest.raises(UsageError, match="no training example is left of 8 rows"):
        data.build(cfg, tiny_tokenizer, False)
