from tasks.base import Completion
from tasks.humaneval import HumanEval
from tests.helpers import write_jsonl


def problem(task_id="HumanEval/0"):
    return next(p for p in HumanEval().load() if p.task_id == task_id)


def test_loads_all_164_problems_in_numeric_order():
    problems = HumanEval().load()
    assert len(problems) == 164
    assert [p.task_id for p in problems[:3]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert problems[10].task_id == "HumanEval/10"
    assert all(p.entry_point and p.tests and p.reference for p in problems)


def test_base_model_output_is_cut_at_the_next_top_level_statement():
    p = problem()
    text, full = HumanEval().postprocess(p, "    return False\n\n\ndef main():\n    pass\n", chat=False)
    assert (text, full) == ("    return False\n\n", False)


def test_chat_answer_with_the_whole_function_becomes_a_full_program():
    p = problem()
    raw = (
        "Here you go:\n```python\nfrom typing import List\n\n"
        "def has_close_elements(numbers, threshold):\n    return False\n```\nDone."
    )
    text, full = HumanEval().postprocess(p, raw, chat=True)
    assert full and text.startswith("from typing import List") and text.endswith("return False\n")


def test_chat_answer_with_only_a_body_continues_the_prompt():
    text, full = HumanEval().postprocess(problem(), "```python\n    return False\n```", chat=True)
    assert (text, full) == ("    return False\n", False)


def test_program_runs_prompt_completion_tests_and_check():
    p = problem()
    source = HumanEval().program(p, Completion(p.task_id, 0, p.reference)).source
    assert source.startswith(p.prompt + p.reference)
    assert source.rstrip().endswith("check(__harness_guard(has_close_elements))")


def test_full_program_keeps_the_prompts_helpers():
    p = problem("HumanEval/38")  # decode_cyclic's prompt defines encode_cyclic, which solutions call
    solution = "def decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n"
    source = HumanEval().program(p, Completion(p.task_id, 0, solution, full_program=True)).source
    assert "def encode_cyclic" in source and source.index("def encode_cyclic") < source.index(solution)
    compile(source, "program", "exec")


def test_chat_prompt_contains_the_original_prompt():
    p = problem()
    assert p.prompt in HumanEval().prompt(p, chat=True)
    assert HumanEval().prompt(p, chat=False) == p.prompt


def test_data_in_the_columns_of_openai_humaneval(tmp_path):
    problems = HumanEval().load()[:3]
    columns = {
        "task_id": "task_id",
        "prompt": "prompt",
        "canonical_solution": "reference",
        "test": "tests",
        "entry_point": "entry_point",
    }
    rows = [{column: getattr(p, field) for column, field in columns.items()} for p in problems]
    assert HumanEval(data=str(write_jsonl(tmp_path / "he.jsonl", rows))).load() == problems


def test_similarity_compares_a_whole_program_without_the_prompt_it_repeats():
    p = problem()
    task = HumanEval()
    assert task.reference_text(p) == p.reference
    assert task.prediction_text(p, Completion(p.task_id, 0, p.prompt + p.reference, full_program=True)) == p.reference
    assert task.prediction_text(p, Completion(p.task_id, 0, "    return True\n")) == "    return True\n"
