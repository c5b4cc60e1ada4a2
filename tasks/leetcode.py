"""LeetCode (greengerong/leetcode, 2,360 problems): the statement, plus the function signature
of the reference Python solution, as the prompt; scored by pass@k and by similarity to that
solution, reported by difficulty (Easy, Medium, Hard) as CodeCraft reports them.

The tests come from the statement's own examples (tasks/leetcode_examples.py), and a problem is
executed only where they can be had. These are scored by similarity only, each with its reason
in metrics.json: examples that do not parse, a class to design (a sequence of method calls),
a linked list or tree argument (not converted yet), a statement that accepts several answers,
and (found when the run calibrates its time limits) a reference that fails its derived tests.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from sandbox.base import Program
from tasks.base import Completion, Problem, Task
from tasks.data import Source, load_rows
from tasks.extract import first_code_block, function_answer
from tasks.guard import guarded_check
from tasks.leetcode_examples import Unparsed, check_source, parse_examples, unescape

SOURCE = Source(
    hub="greengerong/leetcode", columns=("id", "slug", "title", "difficulty", "content", "python"), split="train"
)
# What LeetCode's Python judge has imported before the solution runs.
PREAMBLE = (
    "from typing import *\nfrom collections import *\n"
    "import bisect, collections, functools, heapq, itertools, math, operator, re, string\n\n"
)
CHAT_INSTRUCTION = (
    "Solve the following LeetCode problem in Python 3. Reply with the complete code, starting with "
    "`{signature}`, in one ```python code block.\n\n{statement}\n"
)
NODE_CLASSES = re.compile(r"\b(?:ListNode|TreeNode|Node)\b")
NODE_ARGUMENTS = {"head", "root", "l1", "l2", "list1", "list2", "headA", "headB"}
SEVERAL_ANSWERS = re.compile(
    r"\b(?:also (?:a )?(?:valid|correct|accepted|acceptable)|any of them|any one of them|any valid|"
    r"multiple (?:valid )?(?:answers|solutions))\b",
    re.IGNORECASE,
)


class LeetCode(Task):
    name = "leetcode"
    description = "LeetCode (greengerong/leetcode): statements with Python solutions; by difficulty"
    metrics = ("pass@k", "bleu", "codebleu", "rouge_l", "exact_match", "bertscore")
    stop = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")
    breakdown = "difficulty"
    breakdown_order = ("Easy", "Medium", "Hard")

    def load(self) -> list[Problem]:
        return [_problem(row) for row in load_rows(SOURCE, self.data, self.split)]

    def prompt(self, problem: Problem, chat: bool) -> str:
        if not chat:
            return problem.prompt
        return CHAT_INSTRUCTION.format(signature=problem.metadata["signature"], statement=problem.metadata["statement"])

    def postprocess(self, problem: Problem, raw: str, chat: bool) -> tuple[str, bool]:
        return function_answer(raw, chat, problem.entry_point, self.stop)

    def program(self, problem: Problem, completion: Completion) -> Program:
        head = completion.text if completion.full_program else problem.prompt + completion.text
        source = f"{PREAMBLE}{head}\n\n{problem.tests}\n{guarded_check('check', problem.entry_point)}"
        return Program(source=source, limits=self.limits)

    def reference_completion(self, problem: Problem) -> Completion | None:
        return Completion(problem.task_id, -1, problem.reference or "", full_program=True)

    def prediction_text(self, problem: Problem, completion: Completion) -> str:
        # The reference is a whole solution; a continuation gets the signature it continues.
        if completion.full_program:
            return completion.text
        return problem.metadata["signature"] + "\n" + completion.text


def _problem(row: dict[str, Any]) -> Problem:
    code = first_code_block(row["python"] or "") or ""
    statement = unescape(row["content"] or "").strip()
    entry, signature, parameters = _entry(code)
    tests, reason = None, None
    try:
        tests = _tests(row["content"] or "", code, entry, parameters)
    except Unparsed as exc:
        reason = str(exc)
    metadata = {
        "difficulty": row["difficulty"],
        "slug": row["slug"],
        "title": row["title"],
        "signature": signature,
        "statement": statement,
    }
    if reason:
        metadata["not_executed"] = reason
    return Problem(
        task_id=f"LeetCode/{row['id']}",
        prompt=_base_prompt(signature, statement),
        reference=code,
        tests=tests,
        entry_point=entry,
        metadata=metadata,
    )


def _base_prompt(signature: str, statement: str) -> str:
    """The signature with the statement as its docstring, for a base model to continue."""
    text = statement.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    body = "\n".join(f"    {line}" if line.strip() else "" for line in text.splitlines())
    return f'{signature}\n    """\n{body}\n    """\n'


def _entry(code: str) -> tuple[str | None, str, list[str]]:
    """(entry point, its signature line, its parameters) of the reference solution.

    The entry point is the top-level function that no other top-level function calls (the
    last such, when helpers come first); a solution without functions has its first class.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None, code.splitlines()[0] if code.strip() else "", []
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    if functions:
        called = {n.id for f in functions for n in ast.walk(f) if isinstance(n, ast.Name) and n.id != f.name}
        roots = [f for f in functions if f.name not in called] or functions
        node: ast.AST = roots[-1]
        parameters = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg != "self"]
    elif classes:
        node, parameters = classes[0], []
    else:
        return None, "", []
    return node.name, code.splitlines()[node.lineno - 1].rstrip(), parameters


def _tests(content: str, code: str, entry: str | None, parameters: list[str]) -> str:
    """The check(candidate) function of a problem, or Unparsed with the reason there is none."""
    if not code.strip():
        raise Unparsed("no Python solution")
    if entry is None:
        raise Unparsed("the Python solution does not parse, or defines no function")
    tree = ast.parse(code)
    if not any(isinstance(n, ast.FunctionDef) and n.name == entry for n in tree.body):
        raise Unparsed("a class to design: its examples are sequences of method calls (not converted yet)")
    if NODE_CLASSES.search(code) or NODE_ARGUMENTS & set(parameters):
        raise Unparsed("takes or returns a linked list or a tree (not converted yet)")
    if SEVERAL_ANSWERS.search(content):
        raise Unparsed("the statement accepts several answers")
    examples = parse_examples(content)
    any_order = re.search(r"\bin any order\b", content, re.IGNORECASE) is not None
    in_place = re.search(r"\bin[- ]place\b", content, re.IGNORECASE) is not None and not _returns_value(tree, entry)
    return check_source(examples, parameters, any_order, in_place)


def _returns_value(tree: ast.Module, entry: str) -> bool:
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == entry)
    return any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(function))
