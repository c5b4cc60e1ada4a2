"""Each similarity metric equals a direct call of its library on the same strings."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from harness.metrics import similarity
from harness.metrics.bertscore import NO_MODEL, bertscore_f1

REFERENCE = (
    "def moving_average(values, window):\n"
    "    total = sum(values[:window])\n"
    "    averages = [total / window]\n"
    "    for i in range(window, len(values)):\n"
    "        total += values[i] - values[i - window]\n"
    "        averages.append(total / window)\n"
    "    return averages\n"
)
# (prediction, reference): exact, whitespace-only change, renamed, a line dropped, prose, empty,
# another language, a reference too short for 4-grams, code that does not parse.
PAIRS = [
    (REFERENCE, REFERENCE),
    (REFERENCE.replace("    ", "  "), REFERENCE),
    (REFERENCE.replace("total", "running"), REFERENCE),
    ("\n".join(line for line in REFERENCE.splitlines() if "append" not in line), REFERENCE),
    ("The moving average of a list.", REFERENCE),
    ("", "def f(x):\n    return x * 2\n"),
    ("SELECT name FROM employees WHERE salary > 50000;", "SELECT name FROM staff WHERE salary >= 50000;"),
    ("return x", "return y"),
    ("def broken(:\n    pass", "def fixed():\n    pass\n"),
    ("for i in range(10):\n    print(i, i * i)", "for j in range(10):\n    print(j, j ** 2)"),
]
PREDICTIONS = [p for p, _ in PAIRS]
REFERENCES = [r for _, r in PAIRS]

DIRECT = """
import json, sys
import sacrebleu
from codebleu import calc_codebleu
from rouge_score import rouge_scorer

predictions, references = json.load(sys.stdin)
codebleu = calc_codebleu(references, predictions, lang="python")
scorer = rouge_scorer.RougeScorer(["rougeL"])
print(json.dumps({
    "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
    "sentence_bleu": [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(predictions, references)],
    "codebleu": codebleu["codebleu"],
    "codebleu_ngram": codebleu["ngram_match_score"],
    "codebleu_weighted_ngram": codebleu["weighted_ngram_match_score"],
    "codebleu_syntax": codebleu["syntax_match_score"],
    "codebleu_dataflow": codebleu["dataflow_match_score"],
    "rouge_l": [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)],
}))
"""


def direct_call(predictions: list[str], references: list[str]) -> dict:
    """The libraries called directly, in a process with the scorer's hash seed (codebleu's data
    flow depends on it)."""
    env = {**os.environ, "PYTHONHASHSEED": similarity.HASH_SEED}
    proc = subprocess.run(
        [sys.executable, "-c", DIRECT],
        input=json.dumps([predictions, references]),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def scorer():
    with similarity.Scorer(2) as scorer:
        yield scorer


def test_each_metric_equals_a_direct_call_of_its_library(scorer):
    stats = scorer.sample_stats(PREDICTIONS, REFERENCES)
    ours = scorer.corpus_scores(stats)
    direct = direct_call(PREDICTIONS, REFERENCES)
    for name in ("bleu", "codebleu", "codebleu_ngram", "codebleu_weighted_ngram", "codebleu_syntax"):
        assert ours[name] == pytest.approx(direct[name], rel=1e-12, abs=1e-12), name
    assert ours["codebleu_dataflow"] == pytest.approx(direct["codebleu_dataflow"], rel=1e-12)
    sentence = similarity.sentence_bleu(PREDICTIONS, REFERENCES)
    assert sentence == pytest.approx(direct["sentence_bleu"], rel=1e-12, abs=1e-12)
    assert ours["rouge_l"] == pytest.approx(sum(direct["rouge_l"]) / len(PAIRS), rel=1e-12)
    assert [s.rouge_l for s in stats] == pytest.approx(direct["rouge_l"], rel=1e-12, abs=1e-12)
    # Exact match: equal up to whitespace (pairs 0 and 1).
    assert [s.exact for s in stats] == [True, True] + [False] * (len(PAIRS) - 2)
    assert ours["exact_match"] == pytest.approx(2 / len(PAIRS))


def test_corpus_scores_of_a_subset_equal_the_library_on_that_subset(scorer):
    """The breakdown scores groups from the same per-sample statistics."""
    stats = scorer.sample_stats(PREDICTIONS, REFERENCES)
    subset = [2, 3, 9]
    ours = scorer.corpus_scores([stats[i] for i in subset])
    direct = direct_call([PREDICTIONS[i] for i in subset], [REFERENCES[i] for i in subset])
    assert ours["bleu"] == pytest.approx(direct["bleu"], rel=1e-12)
    assert ours["codebleu"] == pytest.approx(direct["codebleu"], rel=1e-12)


def test_references_against_themselves_score_the_maximum(scorer):
    references = [r for r in REFERENCES if len(r.split()) >= 4]  # CodeBLEU's n-grams need 4 tokens
    scores = scorer.corpus_scores(scorer.sample_stats(references, references))
    assert scores["bleu"] == pytest.approx(100)
    assert scores["codebleu"] == pytest.approx(1.0)
    assert scores["rouge_l"] == scores["exact_match"] == 1.0


def test_damaged_predictions_score_strictly_between(scorer):
    damaged = [REFERENCE.replace("total", "running"), REFERENCE.replace("window", "w").replace("values", "v")]
    scores = scorer.corpus_scores(scorer.sample_stats(damaged, [REFERENCE, REFERENCE]))
    assert 0 < scores["bleu"] < 100
    for name in ("codebleu", "rouge_l"):
        assert 0 < scores[name] < 1, name
    assert scores["exact_match"] == 0


def test_known_pairs_are_not_scored_twice(scorer):
    first = scorer.sample_stats(PREDICTIONS[:3], REFERENCES[:3])
    again = scorer.sample_stats(PREDICTIONS[:3], REFERENCES[:3])
    assert all(a is b for a, b in zip(first, again))


def test_prefetched_pairs_survive_the_pool_growing(monkeypatch):
    # One pair prefetched starts one process; three chunks later need a second one: the pool is
    # replaced, and what the first was computing must still be there (a resumed run scores this way).
    monkeypatch.setattr(similarity, "CHUNK", 1)
    with similarity.Scorer(2) as scorer:
        scorer.prefetch(PREDICTIONS[:1], REFERENCES[:1])
        stats = scorer.sample_stats(PREDICTIONS[:3], REFERENCES[:3])
    assert len(stats) == 3 and stats[0].exact


def test_no_samples_no_scores(scorer):
    assert scorer.corpus_scores([]) == {}


def test_lcs_length_equals_the_dynamic_programming_table():
    from rouge_score.rouge_scorer import _lcs_table

    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randrange(0, 40))]
        b = [rng.choice("abcde") for _ in range(rng.randrange(0, 40))]
        expected = _lcs_table(a, b)[-1][-1] if a and b else 0
        assert similarity.lcs_length(a, b) == expected


def test_bertscore_without_a_model_is_unavailable_with_the_reason():
    assert bertscore_f1(["a"], ["a"], None) == (None, NO_MODEL)


def test_bertscore_with_a_folder_that_is_no_model(tmp_path):
    pytest.importorskip("bert_score")
    scores, reason = bertscore_f1(["a"], ["a"], str(tmp_path / "nowhere"))
    assert scores is None and "is not a model folder" in reason
    scores, reason = bertscore_f1(["a"], ["a"], str(tmp_path))
    assert scores is None and reason.startswith(f"bert-score could not use {tmp_path}")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory):
    """A random-weight BERT with a WordPiece vocabulary trained on local text: a real local model."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizer

    out = tmp_path_factory.mktemp("tiny-bert")
    wordpiece = BertWordPieceTokenizer(lowercase=False)
    wordpiece.train_from_iterator(REFERENCES * 4, vocab_size=300, min_frequency=1, show_progress=False)
    wordpiece.save_model(str(out))
    tokenizer = BertTokenizer(str(out / "vocab.txt"), do_lower_case=False, model_max_length=512)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(out)
    return out


def test_bertscore_with_a_tiny_local_model_equals_bert_score(tiny_bert):
    bert_score = pytest.importorskip("bert_score")
    predictions, references = PREDICTIONS[:4], REFERENCES[:4]
    scores, reason = bertscore_f1(predictions, references, str(tiny_bert))
    assert reason is None
    _, _, f1 = bert_score.score(predictions, references, model_type=str(tiny_bert), num_layers=2)
    assert scores == pytest.approx(f1.tolist(), rel=1e-6)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # a prediction equal to its reference
