from tasks.extract import defines_function, first_code_block, trim_at_stop
from tasks.humaneval import HumanEval

STOPS = HumanEval.stop


def test_trim_at_the_earliest_stop_sequence():
    text = "    return x\n\nif __name__ == '__main__':\n    print(f(1))\ndef g(): pass"
    assert trim_at_stop(text, STOPS) == "    return x\n"


def test_trim_keeps_indented_lookalikes():
    # Only a new top-level statement ends the body: nested defs, ifs and comments stay.
    text = "    def helper(y):\n        return y\n    # note\n    if x:\n        return helper(x)\n"
    assert trim_at_stop(text, STOPS) == text


def test_trim_at_a_closing_code_fence():
    assert trim_at_stop("    return 1\n```\nThis function...", STOPS) == "    return 1"


def test_trim_without_stops_is_identity():
    assert trim_at_stop("abc", []) == "abc"


def test_first_python_block_wins_over_earlier_other_blocks():
    text = "Run it:\n```bash\npython x.py\n```\nCode:\n```python\ndef f():\n    return 1\n```\n```python\nx = 2\n```"
    assert first_code_block(text) == "def f():\n    return 1\n"


def test_untagged_block_and_unclosed_fence():
    assert first_code_block("```\nx = 1\n```") == "x = 1\n"
    assert first_code_block("Sure!\n```py3 title\nx = 1\n") == "x = 1\n"


def test_no_fence_gives_none():
    assert first_code_block("def f(): return 1") is None


def test_defines_function_only_at_top_level():
    assert defines_function("import os\n\ndef f(x):\n    return x\n", "f")
    assert not defines_function("class A:\n    def f(self): pass\n", "f")
    assert not defines_function("def f(:\n", "f")
