"""The LeetCode task: the example parser on each kind of value, which problems are executed and
why the others are not, and the derived tests run in the real sandbox."""

from __future__ import annotations

import pytest

from harness import registry
from sandbox.base import Program
from tasks.base import Completion
from tasks.leetcode import LeetCode
from tasks.leetcode_examples import Unparsed, check_source, parse_arguments, parse_examples, parse_value, unescape
from tests.tasks.conftest import DATA

LEETCODE = DATA / "leetcode.jsonl"
EXECUTED = [
    "LeetCode/1",
    "LeetCode/3",
    "LeetCode/4",
    "LeetCode/10",
    "LeetCode/20",
    "LeetCode/48",
    "LeetCode/49",
    "LeetCode/56",
]
SIMILARITY_ONLY = {
    "LeetCode/5": "the statement accepts several answers",
    "LeetCode/146": "a class to design: its examples are sequences of method calls (not converted yet)",
    "LeetCode/206": "takes or returns a linked list or a tree (not converted yet)",
}


@pytest.fixture(scope="module")
def problems():
    return {p.task_id: p for p in LeetCode(data=str(LEETCODE)).load()}


@pytest.fixture(scope="module")
def sandbox():
    with registry.sandboxes.get("process")(workers=2) as box:
        yield box


def run(box, programs: list[Program]) -> list[str]:
    verdicts = dict(box.run_batch(programs))
    return [verdicts[i].status for i in range(len(programs))]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9", 9),
        ("-12", -12),
        ("2.50000", 2.5),
        ("1e-05", 1e-05),
        ('"abcabcbb"', "abcabcbb"),
        ('"a*b\\"c"', 'a*b"c'),
        ("'x'", "x"),
        ("[2,7,11,15]", [2, 7, 11, 15]),
        ("[[1,3],[2,6],[]]", [[1, 3], [2, 6], []]),
        ('[["5","3","."],[".","9","8"]]', [["5", "3", "."], [".", "9", "8"]]),
        ("[]", []),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1,null,2,true]", [1, None, 2, True]),
    ],
)
def test_values_of_every_kind(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["2, nums = [1,2,_]", "[1,2", "nums[0] + 1", "True", "[1 2]", ""])
def test_what_is_no_single_value(text):
    with pytest.raises(Unparsed):
        parse_value(text)


def test_markdown_escapes_are_removed():
    assert unescape(r'nums = \[2,7\], p = "a\*", s = "x\_y"') == 'nums = [2,7], p = "a*", s = "x_y"'


def test_arguments_by_name_in_the_statements_order():
    assert parse_arguments('nums1 = [1,3], nums2 = [2], s = "a, b = c", flag = false') == (
        ("nums1", [1, 3]),
        ("nums2", [2]),
        ("s", "a, b = c"),
        ("flag", False),
    )
    with pytest.raises(Unparsed):
        parse_arguments("[1,2,3], 4")


def test_padded_strings_of_the_scrape_lose_their_space():
    content = '**Input:** s =  "abc ", p =  "a\\* "\n**Output:**  "ab "\n'
    (example,) = parse_examples(content)
    assert example.arguments == (("s", "abc"), ("p", "a*")) and example.expected == "ab"
    genuine = '**Input:** s = "fly me  "\n**Output:** 2\n\n**Input:** s = "moon"\n**Output:** 4\n'
    assert parse_examples(genuine)[0].arguments == (("s", "fly me  "),)


def test_a_statement_without_examples():
    with pytest.raises(Unparsed, match="no \\*\\*Input"):
        parse_examples("Design a parking system.")


def test_coverage_of_the_fixture(problems):
    """8 of 11 problems get tests from their examples; 3 are similarity only, each with its reason.
    (LeetCode/49's reference fails its tests: the run finds it, see test_run.)"""
    assert sorted(t for t, p in problems.items() if p.tests) == sorted(EXECUTED)
    assert {t: p.metadata["not_executed"] for t, p in problems.items() if not p.tests} == SIMILARITY_ONLY
    assert {p.metadata["difficulty"] for p in problems.values()} == {"Easy", "Medium", "Hard"}


def test_prompt_is_the_signature_with_the_statement(problems):
    two_sum = problems["LeetCode/1"]
    assert two_sum.prompt.startswith('def twoSum(nums, target):\n    """\n    Given an array of integers `nums`')
    assert "**Input:** nums = [2,7,11,15], target = 9" in two_sum.prompt  # Markdown escapes removed
    compile(two_sum.prompt + "    pass\n", "prompt", "exec")
    chat = LeetCode().prompt(two_sum, chat=True)
    assert "`def twoSum(nums, target):`" in chat and "**Output:** [0,1]" in chat
    assert problems["LeetCode/146"].prompt.startswith("class LRUCache:\n")


def test_the_entry_point_is_the_function_no_other_calls():
    from tasks.leetcode import _entry

    code = "def helper(x):\n    return x\n\ndef solve(nums):\n    return helper(nums)\n"
    assert _entry(code) == ("solve", "def solve(nums):", ["nums"])
    code = "def solve(nums):\n    return helper(nums)\n\ndef helper(x):\n    return x\n"
    assert _entry(code)[0] == "solve"


def test_references_pass_their_derived_tests_but_one(problems, sandbox):
    """The sandbox runs each reference against the tests from its own statement's examples."""
    task = LeetCode()
    programs = [task.program(problems[t], task.reference_completion(problems[t])) for t in EXECUTED]
    statuses = dict(zip(EXECUTED, run(sandbox, programs)))
    # Group Anagrams: any order of groups is accepted, not any order within a group, and the
    # reference orders its groups' words otherwise than the statement: the run demotes it.
    assert statuses.pop("LeetCode/49") == "failed"
    assert set(statuses.values()) == {"passed"}


def test_wrong_answers_fail_and_equivalent_ones_pass(problems, sandbox):
    task = LeetCode()
    cases = [
        ("LeetCode/1", "def twoSum(nums, target):\n    return [0, 1]\n", "failed"),
        (
            "LeetCode/1",
            "def twoSum(nums, target):\n    seen = {}\n    for i, n in enumerate(nums):\n"
            "        if target - n in seen:\n            return [i, seen[target - n]]\n        seen[n] = i\n",
            "passed",
        ),
        (
            "LeetCode/4",
            "def findMedianSortedArrays(a, b):\n    m = sorted(a + b)\n    n = len(m)\n"
            "    return (m[(n - 1) // 2] + m[n // 2]) / 2 + 1e-7\n",
            "passed",
        ),
        ("LeetCode/4", "def findMedianSortedArrays(a, b):\n    return 2.1\n", "failed"),
        ("LeetCode/20", "def is_valid(s):\n    return 1\n", "failed"),  # 1 is not true
        ("LeetCode/48", "def rotate(matrix):\n    return [list(r) for r in zip(*matrix[::-1])]\n", "failed"),
        ("LeetCode/48", "def rotate(matrix):\n    matrix[:] = [list(r) for r in zip(*matrix[::-1])]\n", "passed"),
        (
            "LeetCode/56",
            "class Yes(list):\n    def __eq__(self, other):\n        return True\n"
            "def merge(intervals):\n    return Yes()\n",
            "error",
        ),  # the return-value guard
    ]
    programs = [task.program(problems[t], Completion(t, 0, code, full_program=True)) for t, code, _ in cases]
    assert run(sandbox, programs) == [status for _, _, status in cases]


def test_a_base_models_body_continues_the_prompt(problems, sandbox):
    task = LeetCode()
    problem = problems["LeetCode/20"]
    raw = (
        "    stack = []\n    for c in s:\n        if c in '([{':\n            stack.append(c)\n"
        "        elif not stack or '([{'[')]}'.index(c)] != stack.pop():\n            return False\n"
        "    return not stack\n\ndef unrelated():\n    pass\n"
    )
    text, full = task.postprocess(problem, raw, chat=False)
    assert not full and "unrelated" not in text
    assert task.prediction_text(problem, Completion(problem.task_id, 0, text)).startswith(
        "def is_valid(s: str) -> bool:\n"
    )
    assert run(sandbox, [task.program(problem, Completion(problem.task_id, 0, text))]) == ["passed"]


def test_check_source_orders_arguments_by_the_signature():
    (example,) = parse_examples("**Input:** target = 9, nums = [2,7]\n**Output:** [0,1]\n")
    source = check_source([example], ["nums", "target"], any_order=False, in_place=False)
    assert "arguments = [[2, 7], 9]" in source
    with pytest.raises(Unparsed, match="2 arguments"):
        check_source([example], ["nums"], any_order=False, in_place=False)


def test_a_chat_answer_to_a_design_problem_is_the_whole_class(problems):
    problem = problems["LeetCode/146"]
    raw = "```python\nclass LRUCache:\n    def __init__(self, capacity):\n        self.capacity = capacity\n```"
    text, full = LeetCode().postprocess(problem, raw, chat=True)
    assert full and LeetCode().prediction_text(problem, Completion(problem.task_id, 0, text, full)) == text
