"""Similarity of a prediction to its reference: BLEU, CodeBLEU, ROUGE-L and exact match.

Each value equals a direct call of its library on the same strings (tests/harness/test_similarity.py
shows it):

    bleu           sacrebleu.corpus_bleu(predictions, [references]).score      (defaults, 0-100)
    sentence BLEU  sacrebleu.sentence_bleu(prediction, [reference]).score      (per sample)
    codebleu       codebleu.calc_codebleu(references, predictions, lang="python")["codebleu"]  (0-1),
                   with its four components: ngram, weighted_ngram, syntax, dataflow
    rouge_l        mean of rouge_score.rouge_scorer.RougeScorer(["rougeL"]).score(reference,
                   prediction)["rougeL"].fmeasure                              (0-1)
    exact_match    mean of prediction.split() == reference.split(), i.e. equal up to whitespace (0-1)

Speed: the libraries score one corpus in one pass, which takes minutes over 20,000 samples.
Every one of these scores is a sum of per-sample statistics (n-gram counts, matched subtrees,
matched data flows, LCS length) followed by a closing formula, so each sample's statistics are
computed once, with the libraries' own functions, in worker processes, and a corpus (or any group
of it, such as a difficulty level) is scored by summing them. Only the closing formulas and the
LCS length (bit-parallel instead of a Python table) are written here.

Determinism: codebleu's data-flow extraction iterates over sets of strings, so its score depends on
Python's per-process hash seed. The workers run with PYTHONHASHSEED=0, which makes the scores
reproducible; the library called directly under the same seed gives the same values. The
libraries are imported in the workers only, except sacrebleu for the sentence BLEU of each
results row (sentence_bleu()), which a run needs before the workers have finished.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

METRICS = (
    "bleu",
    "codebleu",
    "codebleu_ngram",
    "codebleu_weighted_ngram",
    "codebleu_syntax",
    "codebleu_dataflow",
    "rouge_l",
    "exact_match",
)
HASH_SEED = "0"
CHUNK = 200  # pairs per task sent to a worker
ORDER = 4  # n-gram orders of BLEU and CodeBLEU
WEIGHTS = (0.25, 0.25, 0.25, 0.25)  # calc_codebleu's defaults (alpha, beta, gamma, theta)


@dataclass(frozen=True)
class SampleStats:
    """What one (prediction, reference) pair adds to each corpus score."""

    bleu: tuple[int, ...]  # sacrebleu's segment statistics: sys_len, ref_len, correct[4], total[4]
    ngram: tuple[float, ...]  # codebleu n-gram match: numerators[4], denominators[4], hyp_len, ref_len
    weighted: tuple[float, ...]  # the same for the keyword-weighted n-gram match
    syntax: tuple[int, int]  # matched reference subtrees, reference subtrees
    dataflow: tuple[int, int]  # matched reference data flows, reference data flows
    rouge_l: float
    exact: bool


class Scorer:
    """Scoring processes, started on first use and pinned to one hash seed, and the statistics
    they computed (a run scores its new samples before executing them, then all of them)."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or os.cpu_count() or 1
        self._pool: Any = None
        self._size = 0  # processes in the pool: no more than its largest job so far can use
        self._known: dict[tuple[str, str], SampleStats] = {}
        self._pending: list[tuple[list[tuple[str, str]], Any]] = []  # (pairs, their AsyncResult)

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pending.clear()
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def prefetch(self, predictions: Sequence[str], references: Sequence[str]) -> None:
        """Start computing these pairs' statistics in the background (a run executes meanwhile);
        sample_stats() collects them."""
        queued = {pair for pairs, _ in self._pending for pair in pairs}
        new = list(dict.fromkeys(p for p in zip(predictions, references, strict=True) if p not in self._known))
        new = [pair for pair in new if pair not in queued]
        chunks = [new[i : i + CHUNK] for i in range(0, len(new), CHUNK)]
        if chunks:
            self._pending.append((new, self._pool_started(len(chunks)).map_async(_chunk_stats, chunks)))

    def sample_stats(self, predictions: Sequence[str], references: Sequence[str]) -> list[SampleStats]:
        """Per-sample statistics of every (prediction, reference) pair, in order."""
        self.prefetch(predictions, references)
        self._collect()
        return [self._known[pair] for pair in zip(predictions, references)]

    def corpus_scores(self, stats: Sequence[SampleStats]) -> dict[str, float]:
        """The metrics of METRICS over these samples; empty when there are none."""
        return self._pool_started().apply(aggregate, (list(stats),)) if stats else {}

    def _collect(self) -> None:
        """Wait for the prefetched statistics and keep them."""
        for pairs, result in self._pending:
            self._known.update(zip(pairs, (stats for chunk in result.get() for stats in chunk)))
        self._pending.clear()

    def _pool_started(self, jobs: int = 1) -> Any:
        """The pool, with a process for each of `jobs` concurrent jobs (up to `processes`): a
        process costs half a second of start-up, which a small run would feel."""
        wanted = min(self.processes, jobs)
        if self._pool is not None and self._size < wanted:
            self._collect()  # what the smaller pool is computing would be lost with it
            self.close()
        if self._pool is None:
            self._size = wanted
            # spawn: fresh interpreters (never a fork of a process holding torch's threads), which
            # read PYTHONHASHSEED as they start.
            with _environment(PYTHONHASHSEED=HASH_SEED):
                self._pool = multiprocessing.get_context("spawn").Pool(wanted, initializer=_ignore_interrupts)
        return self._pool


def sentence_bleu(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """sacrebleu.sentence_bleu(prediction, [reference]).score of each pair, in this process (quick,
    and needed before the corpus statistics are: each results row carries its sample's value)."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)  # what sacrebleu.sentence_bleu builds per call
    scores: dict[tuple[str, str], float] = {}
    for pair in zip(predictions, references, strict=True):
        if pair not in scores:
            scores[pair] = bleu.sentence_score(pair[0], [pair[1]]).score
    return [scores[pair] for pair in zip(predictions, references)]


def aggregate(stats: Sequence[SampleStats]) -> dict[str, float]:
    """Sum the per-sample statistics and apply each library's closing formula."""
    from codebleu import bleu as codebleu_bleu
    from codebleu import weighted_ngram_match
    from sacrebleu.metrics import BLEU

    bleu = BLEU()._compute_score_from_stats(_sum(s.bleu for s in stats)).score
    ngram = _codebleu_bleu(codebleu_bleu, _sum(s.ngram for s in stats))
    weighted = _codebleu_bleu(weighted_ngram_match, _sum(s.weighted for s in stats))
    syntax_match, syntax_total = _sum(s.syntax for s in stats)
    syntax = syntax_match / syntax_total
    flow_match, flow_total = _sum(s.dataflow for s in stats)
    dataflow = flow_match / flow_total if flow_total else 0  # calc_codebleu: 0 when no reference has data flow
    alpha, beta, gamma, theta = WEIGHTS
    codebleu = alpha * ngram + beta * weighted + gamma * syntax + theta * (dataflow or 1)
    return {
        "bleu": bleu,
        "codebleu": codebleu,
        "codebleu_ngram": ngram,
        "codebleu_weighted_ngram": weighted,
        "codebleu_syntax": syntax,
        "codebleu_dataflow": dataflow,
        "rouge_l": sum(s.rouge_l for s in stats) / len(stats),
        "exact_match": sum(s.exact for s in stats) / len(stats),
    }


def _codebleu_bleu(module: Any, sums: Sequence[float]) -> float:
    """The closing lines of codebleu's corpus_bleu (bleu.py and weighted_ngram_match.py)."""
    numerators, denominators = sums[:ORDER], sums[ORDER : 2 * ORDER]
    hyp_len, ref_len = sums[2 * ORDER], sums[2 * ORDER + 1]
    if numerators[0] == 0:
        return 0
    penalty = module.brevity_penalty(ref_len, hyp_len)
    p_n = module.SmoothingFunction().method1(list(zip(numerators, denominators)))
    return penalty * math.exp(math.fsum(w * math.log(p[0] / p[1]) for w, p in zip(WEIGHTS, p_n)))


def _sum(rows: Iterator[Sequence[float]]) -> list[float]:
    total: list[float] = []
    for row in rows:
        total = [a + b for a, b in zip(total, row)] if total else list(row)
    return total


# --- in the worker processes -----------------------------------------------------------------


def _ignore_interrupts() -> None:
    """Ctrl-C is the parent's to handle (it stops the pool); workers would only print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _chunk_stats(pairs: list[tuple[str, str]]) -> list[SampleStats]:
    from sacrebleu.metrics import BLEU

    segments = BLEU()._extract_corpus_statistics([p for p, _ in pairs], [[r for _, r in pairs]])
    code = _CodeFeatures()
    rouge = _Rouge()
    out = []
    for (prediction, reference), segment in zip(pairs, segments):
        out.append(
            SampleStats(
                bleu=tuple(int(v) for v in segment),
                **code.pair(prediction, reference),
                rouge_l=rouge.fmeasure(prediction, reference),
                exact=prediction.split() == reference.split(),
            )
        )
    return out


class _CodeFeatures:
    """CodeBLEU's per-sample statistics, from codebleu's own functions.

    calc_codebleu strips both texts, splits them on whitespace for the two n-gram matches, and
    for the syntax and data-flow matches removes comments and docstrings and parses them with
    tree-sitter. Texts repeat (a reference serves n samples), so one instance, used for one chunk, keeps
    the parses it made.
    """

    def __init__(self) -> None:
        from codebleu.codebleu import PACKAGE_DIR
        from codebleu.parser import DFG_python
        from codebleu.utils import get_tree_sitter_language
        from tree_sitter import Parser

        parser = Parser()
        parser.language = get_tree_sitter_language("python")
        self.parser = [parser, DFG_python]
        keywords = (PACKAGE_DIR / "keywords" / "python.txt").read_text(encoding="utf-8").splitlines()
        self.keywords = {k.strip() for k in keywords}
        self._trees: dict[str, tuple[list[str], list[tuple]]] = {}

    def pair(self, prediction: str, reference: str) -> dict[str, tuple]:
        from codebleu import bleu, weighted_ngram_match

        hyp, ref = prediction.strip(), reference.strip()
        hyp_tokens, ref_tokens = hyp.split(), ref.split()
        references = [ref_tokens]
        weighted_references = [[ref_tokens, {t: 1 if t in self.keywords else 0.2 for t in ref_tokens}]]
        ngram = [bleu.modified_precision(references, hyp_tokens, n) for n in range(1, ORDER + 1)]
        weighted = [
            weighted_ngram_match.modified_recall(weighted_references, hyp_tokens, n) for n in range(1, ORDER + 1)
        ]
        # Lengths as the library takes them: for the weighted match a "reference" is the pair
        # [tokens, weights], so its closest_ref_length is 2 (a quirk of codebleu, kept on purpose).
        lengths = (len(hyp_tokens), bleu.closest_ref_length(references, len(hyp_tokens)))
        weighted_lengths = (
            len(hyp_tokens),
            weighted_ngram_match.closest_ref_length(weighted_references, len(hyp_tokens)),
        )
        hyp_trees, hyp_flows = self._tree(hyp)
        ref_trees, ref_flows = self._tree(ref)
        hyp_tree_set = set(hyp_trees)
        matched_flows = sum((Counter(ref_flows) & Counter(hyp_flows)).values())
        return {
            "ngram": (*(n for n, _ in ngram), *(d for _, d in ngram), *lengths),
            "weighted": (*(n for n, _ in weighted), *(d for _, d in weighted), *weighted_lengths),
            "syntax": (sum(1 for t in ref_trees if t in hyp_tree_set), len(ref_trees)),
            "dataflow": (matched_flows, len(ref_flows)),
        }

    def _tree(self, text: str) -> tuple[list[str], list[tuple]]:
        """(S-expressions of every subtree with children, normalised data flows) of one text."""
        if text not in self._trees:
            from codebleu.dataflow_match import get_data_flow, normalize_dataflow
            from codebleu.parser import remove_comments_and_docstrings

            try:
                code = remove_comments_and_docstrings(text, "python")
            except Exception:  # calc_codebleu keeps the text as it is then
                code = text
            root = self.parser[0].parse(bytes(code, "utf8")).root_node
            flows = normalize_dataflow(get_data_flow(code, self.parser))
            self._trees[text] = (_subtrees(root), [(var, rel, tuple(parents)) for var, rel, parents in flows])
        return self._trees[text]


def _subtrees(root: Any) -> list[str]:
    """As codebleu's syntax match: the root and every node that has children, as S-expressions."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(str(node))
        stack.extend(child for child in node.children if child.children)
    return out


class _Rouge:
    """ROUGE-L F-measure with rouge-score's tokenizer and formula; the LCS length is bit-parallel."""

    def __init__(self) -> None:
        # What DefaultTokenizer(use_stemmer=False).tokenize calls, without rouge_score.tokenizers'
        # import of nltk (half a second per scoring process) for the stemmer it does not use.
        from rouge_score import scoring, tokenize

        self.tokenize = tokenize.tokenize
        self.fmeasure_of = scoring.fmeasure

    def fmeasure(self, prediction: str, reference: str) -> float:
        target, predicted = self.tokenize(reference, None), self.tokenize(prediction, None)
        if not target or not predicted:
            return 0.0
        lcs = lcs_length(target, predicted)
        return self.fmeasure_of(lcs / len(predicted), lcs / len(target))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison and Dix, 1986).

    Bit i of `row` is 0 where the LCS of a[: i + 1] and the part of b read so far gains a
    symbol; one big-integer addition per symbol of b replaces a row of the dynamic-programming table.
    """
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for token in b:
        match = row & masks.get(token, 0)
        row = ((row + match) | (row - match)) & full
    return len(a) - row.bit_count()


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
