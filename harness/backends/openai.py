"""Any OpenAI-compatible server: `vllm serve`, TGI, llama.cpp's server, `transformers serve`, a hosted API.

/v1/completions for base models, /v1/chat/completions with --chat (the server applies its own
chat template). Requests run `--concurrency` at a time from a thread pool (the standard library
only); each request's samples are yielded as soon as they arrive, so that the run appends them
to samples.jsonl at once and a resumed run asks only for the samples still missing. 429s, 5xx
answers, timeouts and dropped connections are retried with exponential backoff; a server that
ignores `n` is asked again until the request has all its samples.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlparse

from harness.backends.base import Batch, Generation, Request, request_seed
from harness.config import RunConfig, Sampling
from harness.errors import UsageError

TRIES = 7  # a request is given up after this many failed tries (about a minute of backoff)
BACKOFF_S = 0.5  # the first wait; each next one doubles, up to MAX_BACKOFF_S
MAX_BACKOFF_S = 30.0
MAX_STOP = 4  # OpenAI's API takes at most 4 stop sequences; the task trims at the others itself
EMPTY_ANSWERS = 3  # a server that answers with no choices this many times in a row is given up on
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT_S = 600.0


class OpenAIBackend:
    """Samples from a model behind an OpenAI-compatible HTTP API."""

    independent_requests = True  # each request has its own seed (see harness.backends.base)
    has_chat_template = False  # unknown from here: --chat asks for the server's chat endpoint

    def __init__(self, config: RunConfig) -> None:
        if not config.model:
            raise UsageError("--model is required: the model's name on the server")
        self.url = _check_url(config.base_url or "")
        self.model = config.model
        self.concurrency = config.concurrency or DEFAULT_CONCURRENCY
        self.timeout = config.request_timeout or DEFAULT_TIMEOUT_S
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = api_key(config.api_key)
        if key:
            self.headers["Authorization"] = f"Bearer {key}"  # sent to the server, written nowhere
        self.server = ""  # the Server header of the first answer: recorded in the manifest
        self._stopping = threading.Event()
        self._check_model()

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.url, "model": self.model, "server": self.server}

    def generate(
        self, batches: Iterable[Batch], sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> Iterator[tuple[Batch, list[list[Generation]]]]:
        """Yield each request as a Batch of its own, with its generations, as answers arrive."""
        jobs = [(batch.seed, request) for batch in batches for request in batch.requests]
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
        self._stopping.clear()
        try:
            running: dict[Future, tuple[int, Request]] = {}
            todo = iter(jobs)
            # Keep a few requests queued per thread rather than all 16,400 of a large run.
            for job in _take(todo, 4 * self.concurrency):
                running[pool.submit(self._samples, *job, sampling, stop, chat)] = job
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    seed, request = running.pop(future)
                    yield Batch(seed, (request,)), [future.result()]
                for job in _take(todo, len(finished)):
                    running[pool.submit(self._samples, *job, sampling, stop, chat)] = job
        finally:
            # An error or an interrupt: queued requests are dropped, no request is retried, and the
            # ones in flight end here, not while a later run (a series) talks to the server.
            self._stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _samples(
        self, seed: int, request: Request, sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> list[Generation]:
        """`request.count` generations, asking again while a server returns fewer than asked for."""
        got: list[Generation] = []
        empty = 0
        while len(got) < request.count:
            want = request.count - len(got)
            body = self._body(request.prompt, want, request_seed(seed, request, len(got)), sampling, stop, chat)
            answer = self._post("/chat/completions" if chat else "/completions", body)
            choices = sorted(_choices(answer, self.url), key=lambda c: c.get("index", 0))[:want]
            got += [_generation(choice, chat, bool(stop)) for choice in choices]
            empty = 0 if choices else empty + 1
            if empty >= EMPTY_ANSWERS:
                raise UsageError(f"{self.url} answered {EMPTY_ANSWERS} times with no choices for {request.task_id}")
        return got

    def _body(
        self, prompt: str, n: int, seed: int, sampling: Sampling, stop: Sequence[str], chat: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": sampling.max_new_tokens, "seed": seed}
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        body["temperature"] = sampling.temperature
        if not sampling.greedy:
            body["top_p"] = sampling.top_p
        if n > 1:  # some servers reject or warn about `n`; leave it out where it is 1
            body["n"] = n
        if stop:
            body["stop"] = list(stop)[:MAX_STOP]
        # Not in OpenAI's schema (vLLM, TGI and llama.cpp take them): sent only when they matter,
        # so that a strict server is not refused a request that does not need them.
        if sampling.top_k and not sampling.greedy:
            body["top_k"] = sampling.top_k
        if sampling.repetition_penalty != 1.0:
            body["repetition_penalty"] = sampling.repetition_penalty
        return body

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, json.dumps(body).encode())

    def _request(self, method: str, path: str, data: bytes | None = None) -> Any:
        """One API call, retried on 429, 5xx, timeouts and connection errors; other errors are the user's."""
        url, problem, delay = self.url + path, "", 0.0
        for attempt in range(TRIES):
            # Stopped (an error or an interrupt elsewhere): a queued request is not sent at all.
            if self._stopping.wait(delay if attempt else 0):
                raise UsageError("generation stopped")
            request = urllib.request.Request(url, data=data, headers=self.headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    self.server = self.server or response.headers.get("Server", "")
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise Refused(exc.code, f"{url} answered {exc.code}: {_error_message(exc)}") from None
                problem, delay = f"HTTP {exc.code}", _retry_after(exc, _backoff(attempt))
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                problem, delay = _reason(exc), _backoff(attempt)  # ValueError: a torn or non-JSON answer
        raise UsageError(
            f"{url}: no answer after {TRIES} tries (last: {problem}); finished samples are saved, "
            "run the same command to resume"
        )

    def _check_model(self) -> None:
        """Reach the server once before generating, and warn when it does not list the model."""
        try:
            listed = self._request("GET", "/models")
        except Refused as exc:
            if exc.code in (404, 405):  # a server without /models: generation will tell
                return
            raise
        models = listed.get("data") if isinstance(listed, dict) else None
        names = [m.get("id") for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        if names and self.model not in names:
            shown = ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")
            print(f"harness: warning: {self.url} does not list {self.model!r} (it lists {shown})", file=sys.stderr)


class Refused(UsageError):
    """The server refused a request for good (a 4xx other than 429): retrying cannot help."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def api_key(name: str | None) -> str | None:
    """The key in the environment variable `name` (default OPENAI_API_KEY, optional)."""
    if name is None:
        return os.environ.get("OPENAI_API_KEY") or None
    # Never echo the value: a user may have passed the key itself by mistake.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name not in os.environ:
        raise UsageError(
            "--api-key takes the name of an environment variable that holds the key (e.g. OPENAI_API_KEY), "
            "and no variable of that name is set"
        )
    return os.environ[name]


def _check_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"--base-url {url!r} is not an http(s) URL, e.g. http://localhost:8000/v1")
    return url.rstrip("/")


def _choices(answer: Any, url: str) -> list[dict[str, Any]]:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        raise UsageError(f"{url} answered without a list of choices: {json.dumps(answer)[:200]}")
    return choices


def _generation(choice: dict[str, Any], chat: bool, stop_requested: bool) -> Generation:
    text = (choice.get("message") or {}).get("content") if chat else choice.get("text")
    return Generation(text=text or "", finish_reason=_finish_reason(choice, stop_requested))


def _finish_reason(choice: dict[str, Any], stop_requested: bool) -> str:
    """OpenAI's "stop" covers both a stop sequence and the end of sequence; vLLM's stop_reason
    tells them apart (None: EOS). Other servers: a stop sequence where one was given."""
    if choice.get("finish_reason") == "length":
        return "length"
    if "stop_reason" in choice:
        return "eos" if choice["stop_reason"] is None else "stop"
    return "stop" if stop_requested else "eos"


def _backoff(attempt: int) -> float:
    """The wait after failed try number `attempt` (0-based): doubling, with full jitter, so that
    concurrent requests that failed together do not come back together."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF_S, BACKOFF_S * 2**attempt)


def _retry_after(exc: urllib.error.HTTPError, default: float) -> float:
    """The server's Retry-After in seconds (capped), else `default`."""
    try:
        return min(MAX_BACKOFF_S, max(0.0, float(exc.headers.get("Retry-After", ""))))
    except ValueError:
        return default


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The server's own message: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    try:
        raw = exc.read().decode(errors="replace")
    except OSError:
        raw = ""
    try:
        data = json.loads(raw)
        message = data.get("error", {}).get("message") if isinstance(data.get("error"), dict) else None
        message = message or data.get("error") or data.get("detail") or data.get("message") or raw
    except (ValueError, AttributeError):
        message = raw
    text = str(message).strip().splitlines()
    return text[0][:300] if text else exc.reason


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}".strip()


def _take(jobs: Iterator[Any], count: int) -> list[Any]:
    return [job for _, job in zip(range(count), jobs)]
