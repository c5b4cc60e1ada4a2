"""The CodeSearchNet task: the docstring goes to the prompt, the rest is the reference."""

from __future__ import annotations

from tasks.base import Completion
from tasks.codesearchnet import CodeSearchNet, split_docstring
from tests.tasks.conftest import DATA

CODESEARCHNET = DATA / "codesearchnet.jsonl"


def problems():
    return CodeSearchNet(data=str(CODESEARCHNET)).load()


def test_prompt_is_signature_and_docstring_reference_the_function_without_it():
    loaded = problems()
    assert [p.task_id for p in loaded] == [f"CodeSearchNet/{i}" for i in range(6)]
    for problem in loaded:
        signature = problem.metadata["signature"]
        assert problem.prompt.startswith(signature) and problem.reference.startswith(signature)
        assert '"""' not in problem.reference and "'''" not in problem.reference
        assert problem.prompt.rstrip().endswith(('"""', "'''"))
    assert loaded[1].entry_point == "get_json"  # func_name "Client.get_json"
    assert loaded[4].metadata["signature"].count("\n") == 4  # a signature over four lines


def test_python_2_code_still_splits():
    problem = problems()[2]
    assert 'print "  ".join' in problem.reference and problem.prompt.endswith('table."""\n')


def test_a_continuation_is_compared_with_its_signature():
    problem = problems()[5]
    body = problem.reference[len(problem.metadata["signature"]) :]
    task = CodeSearchNet()
    assert task.prediction_text(problem, Completion(problem.task_id, 0, body)) == problem.reference
    assert task.prediction_text(problem, Completion(problem.task_id, 0, "x", full_program=True)) == "x"


def test_code_without_a_docstring():
    assert split_docstring("def f(x):\n    return x\n") is None
    assert split_docstring("def f(x): 'inline'\n") is None
    assert split_docstring("def f(x):\n    # note\n    '''Doc.'''\n    return x\n") == (
        "def f(x):\n    # note\n",
        "    '''Doc.'''\n",
        "    return x\n",
    )
