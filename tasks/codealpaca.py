"""CodeAlpaca (HuggingFaceH4/CodeAlpaca_20K): instructions with the answer GPT wrote for each
(code, mostly Python, sometimes another language or prose). Scored by similarity only: the
prediction is the model's answer, the reference the dataset's completion.
"""

from __future__ import annotations

from tasks.base import Problem, Task
from tasks.data import Source, load_rows
from tasks.extract import first_code_block, trim_at_stop

SOURCE = Source(hub="HuggingFaceH4/CodeAlpaca_20K", columns=("prompt", "completion"), split="test")
# Alpaca's template, for base models, which continue it; chat models get the instruction alone.
TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"


class CodeAlpaca(Task):
    name = "codealpaca"
    description = "CodeAlpaca-20K: instructions answered with code; similarity to the reference answer"
    metrics = ("bleu", "codebleu", "rouge_l", "exact_match", "bertscore")
    stop = ("\n### ",)

    def load(self) -> list[Problem]:
        rows = load_rows(SOURCE, self.data, self.split)
        return [
            Problem(task_id=f"CodeAlpaca/{index}", prompt=row["prompt"] or "", reference=row["completion"] or "")
            for index, row in enumerate(rows)
        ]

    def prompt(self, problem: Problem, chat: bool) -> str:
        return problem.prompt if chat else TEMPLATE.format(instruction=problem.prompt)

    def postprocess(self, problem: Problem, raw: str, chat: bool) -> tuple[str, bool]:
        if not chat:
            return trim_at_stop(raw, self.stop).strip(), False
        # The references are bare code, so a chat answer is compared by its first code block.
        block = first_code_block(raw)
        return (raw if block is None else block).strip(), False
