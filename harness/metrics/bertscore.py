"""BERTScore (Zhang et al., 2020): bert_score.score(predictions, references, model_type=MODEL,
num_layers=L) with a local model folder (--bertscore-model); the reported value is the mean F1.

L is bert-score's own tuned layer for the models it knows (by folder name, e.g. roberta-large),
else the model's last layer. No model is downloaded: without --bertscore-model, or without the
`bert-score` package (the `bertscore` extra), the metric is reported as unavailable, with the
reason, never as 0. torch and transformers are imported only when a model is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

NO_MODEL = "needs a local model: pass --bertscore-model PATH (nothing is downloaded)"


def bertscore_f1(
    predictions: Sequence[str], references: Sequence[str], model: str | None
) -> tuple[list[float] | None, str | None]:
    """(per-sample F1, None), or (None, the reason BERTScore is unavailable)."""
    if not model:
        return None, NO_MODEL
    try:
        import bert_score
    except ImportError:
        return None, "the bert-score package is not installed: pip install 'code-harness[bertscore]'"
    if not Path(model).is_dir():
        return None, f"--bertscore-model {model} is not a model folder"
    try:
        layers = num_layers(model, bert_score.utils.model2layers)
        _, _, f1 = bert_score.score(list(predictions), list(references), model_type=model, num_layers=layers)
    except Exception as exc:  # a folder that is no usable model: the user's to fix, not a crash
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"bert-score could not use {model}: {reason}"
    return [float(v) for v in f1], None


def num_layers(model: str, known: dict[str, int]) -> int:
    """bert-score's tuned layer for a model it knows by name, else the model's last layer."""
    name = Path(model).name
    if name in known:
        return known[name]
    config = json.loads((Path(model) / "config.json").read_text())
    return int(config.get("num_hidden_layers") or config["n_layers"])
