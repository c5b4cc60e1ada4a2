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
    """Whether `code` parses and defines a top-level function `name`."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)
