"""Generation throughput of each backend on a GPU, on HumanEval's 164 prompts (run by gpu_check.sh).

A random-weight Llama (the tiny checkpoint's tokenizer, widened to a head size of 64 so that
vLLM's attention kernels and bitsandbytes take it) samples n completions per prompt through
hf (bf16), hf in 4 bits (where bitsandbytes is installed) and vllm (where it is installed);
generated tokens are counted by encoding the texts again with the checkpoint's tokenizer.
Greedy completions of each backend are compared with hf's. Prints one Markdown table.
Nothing here is timed in tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any


def build_wide_checkpoint(out: str | Path) -> Path:
    """The tiny checkpoint with hidden size 256 (4 heads of 64): still random, built in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.demo import build_tiny_checkpoint

    out = build_tiny_checkpoint(out)
    config = LlamaConfig.from_pretrained(out)
    config.update({"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "head_dim": 64})
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def generate_all(
    model: Path, backend: str, n: int, temperature: float, max_new_tokens: int, limit: int, **options: Any
) -> Any:
    """The first `limit` HumanEval prompts, n samples each, through one backend: (texts, seconds, tokens)."""
    import torch
    from transformers import AutoTokenizer

    from harness.config import RunConfig, Sampling
    from harness.run import new_backend, plan_batches
    from tasks.humaneval import HumanEval

    sampling = Sampling(temperature=temperature, max_new_tokens=max_new_tokens)
    base = RunConfig(command="run", task="humaneval", model=str(model), backend=backend, sampling=sampling, n=n)
    config = dataclasses.replace(base, ks=(1,), **options).resolved()
    task = HumanEval()
    problems = task.load()[:limit]
    loaded = new_backend(config)
    plan = plan_batches(problems, [task.prompt(p, False) for p in problems], n, config.batch_size, sampling.seed)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    texts = [g.text for _, outputs in loaded.generate(plan, sampling, task.stop, False) for gs in outputs for g in gs]
    sync()
    seconds = time.perf_counter() - start
    if hasattr(loaded, "close"):
        loaded.close()
    tokenizer = AutoTokenizer.from_pretrained(model)
    # Backends return text: tokens are counted by encoding it again (a random model's text may
    # encode to more tokens than were sampled, hence the cap).
    tokens = sum(min(max_new_tokens, len(tokenizer.encode(text, add_special_tokens=False))) for text in texts)
    return texts, seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="samples per prompt (default 10)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, default=164, help="only the first N prompts (a quick try)")
    args = parser.parse_args()
    from harness.backends import cuda_available

    backends: list[tuple[str, str, dict[str, Any]]] = [("hf", "hf", {"batch_size": 512})]
    if not cuda_available():
        print("gpu_check: no CUDA GPU here: hf runs on the CPU; hf 4-bit and vllm are skipped")
    elif find_spec("bitsandbytes") is None:
        print("gpu_check: bitsandbytes is not installed (pip install 'code-harness[quant]'): hf 4-bit skipped")
    else:
        backends.append(("hf 4-bit (bitsandbytes)", "hf", {"batch_size": 512, "load_in_bits": 4}))
    if cuda_available() and find_spec("vllm") is None:
        print("gpu_check: vllm is not installed (pip install 'code-harness[vllm]'): vllm skipped")
    elif cuda_available():
        backends.append(("vllm", "vllm", {}))
    with tempfile.TemporaryDirectory() as tmp:
        model = build_wide_checkpoint(Path(tmp) / "wide")
        rows, reference = [], None
        for label, backend, options in backends:
            greedy, _, _ = generate_all(model, backend, 1, 0.0, 64, args.limit, **options)
            reference = reference or greedy
            generate_all(model, backend, 2, 0.8, 16, 8, **options)  # warm up the sampling path, untimed
            agree = sum(a == b for a, b in zip(greedy, reference)) / len(reference)
            texts, seconds, tokens = generate_all(
                model, backend, args.n, 0.8, args.max_new_tokens, args.limit, **options
            )
            rows.append((label, len(texts), tokens, seconds, tokens / seconds, agree))
            print(f"gpu_check: {label}: {tokens} tokens in {seconds:.1f} s", flush=True)
    print(f"\nHumanEval, {args.limit} prompts x n={args.n}, temperature 0.8, at most {args.max_new_tokens} new tokens")
    print("| backend | sequences | generated tokens | seconds | tokens/s | greedy completions equal to hf's |")
    print("|---|---|---|---|---|---|")
    for label, sequences, tokens, seconds, rate, agree in rows:
        print(f"| {label} | {sequences} | {tokens} | {seconds:.1f} | {rate:,.0f} | {agree:.0%} |")


if __name__ == "__main__":
    main()
