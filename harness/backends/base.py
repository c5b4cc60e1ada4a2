"""The Backend protocol: batches of prompts in, raw generations out.

The harness plans the batches (harness.run.plan_batches), each with its own seed, so a
run's samples depend only on its settings, never on where an interrupted run stopped.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.config import Sampling


@dataclass(frozen=True)
class Request:
    """`count` samples for one prompt, numbered from `first_id`."""

    task_id: str
    prompt: str
    first_id: int
    count: int


@dataclass(frozen=True)
class Batch:
    seed: int
    requests: tuple[Request, ...]


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" (a stop sequence), "eos" or "length"


class Backend(Protocol):
    """A loaded model. Plugins take the RunConfig in their constructor.

    Optional members, looked up with getattr:
    - `independent_requests = True`: each request's samples depend on that request alone (its
      own seed), so a resumed run may hand the backend only the samples still missing, and the
      backend may yield a request as soon as it is done (a Batch holding that one request).
    - `switch(model) -> bool`: use another checkpoint without loading again what is loaded
      (an adapter of the same base); False where that is not possible.
    - `close()`: free the model's memory before another is loaded.
    """

    @property
    def has_chat_template(self) -> bool: ...

    def generate(
        self, batches: Iterable[Batch], sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> Iterator[tuple[Batch, list[list[Generation]]]]:
        """Yield each batch with, per request, its `count` generations, as batches finish."""
        ...

    def describe(self) -> dict[str, Any]:
        """Versions, device and anything else that belongs in the run's manifest."""
        ...


def request_seed(batch_seed: int, request: Request, offset: int = 0) -> int:
    """A seed of a request's own, from its batch's seed and its place in the run: for backends
    that seed each request (vllm, openai). `offset` varies it when a server is asked again."""
    key = f"{batch_seed}/{request.task_id}/{request.first_id + offset}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF
