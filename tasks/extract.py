"""Post-processing shared by tasks: stop sequences and code-fence extraction."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def trim_at_stop(text: str, stops: Iterable[str]) -> str:
    """Cut `text` at the earliest occurrence of any stop sequence."""
    cut = len(text)
    for stop in stops:
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def first_code_block(text: str, language: str = "python") -> str | None:
    """The body of the first fenced block tagged `language` (else the first untagged or
    other block); an unclosed fence runs to the end. None when there is no fence."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    for wanted in (language, ""):
        for tag, body in blocks:
            if tag == wanted:
                return body
    return blocks[0][1] if blocks else None


def defines_function(code: str, name: str) -> bool:
    """Whether `code` parses and defines a top-level function `name` (or a class: the entry
    point of a LeetCode design problem)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return any(isinstance(node, definitions) and node.name == name for node in tree.body)


def function_answer(raw: str, chat: bool, entry_point: str | None, stops: Iterable[str]) -> tuple[str, bool]:
    """(text, full_program) of an answer to a "complete this function" prompt.

    A base model continues the prompt: its output is cut at the first stop sequence. A chat
    model's code block is a whole program when it defines `entry_point` (or when there is no
    entry point to look for), else a body that continues the prompt.
    """
    if not chat:
        return trim_at_stop(raw, stops), False
    code = first_code_block(raw)
    code = raw if code is None else code
    if entry_point is None or defines_function(code, entry_point):
        return code, True
    return trim_at_stop(code, stops), False
