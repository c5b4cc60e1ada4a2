"""CodeSearchNet, Python (code_search_net): functions from GitHub with their docstrings. The
prompt is the function's signature and docstring; the reference is the function without its
docstring. Scored by similarity only (there are no tests).
"""

from __future__ import annotations

import io
import tokenize

from tasks.base import Completion, Problem, Task
from tasks.data import Source, load_rows
from tasks.extract import function_answer

SOURCE = Source(
    hub="code_search_net",
    config="python",
    columns=("func_name", "func_code_string", "func_documentation_string"),
    split="test",
)
CHAT_INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function, "
    "including its signature, in one ```python code block.\n\n```python\n{prompt}```\n"
)


class CodeSearchNet(Task):
    name = "codesearchnet"
    description = "CodeSearchNet (Python): functions from their signature and docstring; similarity"
    metrics = ("bleu", "codebleu", "rouge_l", "exact_match", "bertscore")
    stop = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")

    def load(self) -> list[Problem]:
        rows = load_rows(SOURCE, self.data, self.split)
        return [_problem(index, row) for index, row in enumerate(rows)]

    def prompt(self, problem: Problem, chat: bool) -> str:
        return CHAT_INSTRUCTION.format(prompt=problem.prompt) if chat else problem.prompt

    def postprocess(self, problem: Problem, raw: str, chat: bool) -> tuple[str, bool]:
        return function_answer(raw, chat, problem.entry_point, self.stop)

    def reference_completion(self, problem: Problem) -> Completion | None:
        return Completion(problem.task_id, -1, problem.reference or "", full_program=True)

    def prediction_text(self, problem: Problem, completion: Completion) -> str:
        # The reference is the whole function; a continuation gets the signature it continues.
        if completion.full_program:
            return completion.text
        return problem.metadata["signature"] + completion.text


def _problem(index: int, row: dict) -> Problem:
    code = row["func_code_string"] or ""
    parts = split_docstring(code)
    if parts is None:  # no docstring found where Python puts one: prompt with the column's text
        signature = code.splitlines(keepends=True)[0] if code else ""
        docstring = '    """' + (row["func_documentation_string"] or "").strip() + '"""\n'
        parts = (signature, docstring, code[len(signature) :])
    signature, docstring, body = parts
    return Problem(
        task_id=f"CodeSearchNet/{index}",
        prompt=signature + docstring,
        reference=signature + body,
        entry_point=(row["func_name"] or "").split(".")[-1] or None,
        metadata={"signature": signature},
    )


def split_docstring(code: str) -> tuple[str, str, str] | None:
    """(signature, docstring, body) of a function's source, as whole lines; None when the first
    statement of its body is not a string on lines of its own (or the code does not tokenize)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    colon = _signature_end(tokens)
    if colon is None:
        return None
    rest = [t for t in tokens[colon + 1 :] if t.type not in (tokenize.NL, tokenize.COMMENT)]
    if len(rest) < 4 or [t.type for t in rest[:2]] != [tokenize.NEWLINE, tokenize.INDENT]:
        return None
    string, after = rest[2], rest[3]
    if string.type != tokenize.STRING or after.type != tokenize.NEWLINE:
        return None
    lines = code.splitlines(keepends=True)
    first, last = string.start[0] - 1, string.end[0]
    return "".join(lines[:first]), "".join(lines[first:last]), "".join(lines[last:])


def _signature_end(tokens: list[tokenize.TokenInfo]) -> int | None:
    """Index of the ':' that ends the first `def` header."""
    depth, started = 0, False
    for index, token in enumerate(tokens):
        if not started:
            started = token.type == tokenize.NAME and token.string == "def"
        elif token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
        elif token.type == tokenize.OP and token.string == ":" and depth == 0:
            return index
    return None
