"""Fixtures of the fine-tuning tests: the tiny checkpoint's tokenizer, and trl/peft or a skip."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)
