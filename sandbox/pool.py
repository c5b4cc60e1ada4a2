"""ForkServerPool: the harness side of the fork servers (sandbox/forkserver.py), shared by the
process and docker backends.

One fork server per worker, each driven by one thread of this process; the caller's factory
starts a server (`start_server(worker_index) -> Popen` with binary stdin/stdout pipes): a local
interpreter for the process backend, a container's for the docker backend. The servers decide
every verdict; this side only moves programs and answers, and looks after the servers:
- at most 2 programs per worker are handed out at a time, and verdicts are yielded as they
  come, so memory stays flat whatever the number of programs;
- a timeout is re-run once, alone, at the end of the batch, before it counts;
- a server that dies, or does not answer within the program's wall-clock limit plus a grace,
  is killed and restarted, and the program tried once more; a second failure is a
  sandbox_error (the harness's fault, never the model's);
- missing protections are logged once per process (logging.getLogger("sandbox")).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .base import SANDBOX_ERROR, STATUSES, TIMEOUT, Program, Verdict

log = logging.getLogger("sandbox")

GRACE_S = 10.0  # beyond the wall-clock limit: the server's own clean-up, a loaded machine
READY_TIMEOUT_S = 120.0  # a container may take a while to start
CLOSE_TIMEOUT_S = 5.0
LINE_CAP = 1 << 20  # an answer is well under 1 KB
_warned = threading.Event()

StartServer = Callable[[int], "subprocess.Popen[bytes]"]


class ServerFailure(Exception):
    """The fork server died, hung or broke the protocol: never the program's fault."""


class ForkServerPool:
    """Runs programs on `workers` fork servers (the Sandbox protocol)."""

    def __init__(
        self,
        workers: int,
        start_server: StartServer,
        *,
        grace_s: float = GRACE_S,
        ready_timeout_s: float = READY_TIMEOUT_S,
        given: tuple[str, ...] = (),
    ) -> None:
        """`given`: protections the servers' surroundings provide (a container's own namespaces and
        limits) where the servers cannot apply them themselves."""
        self.workers = max(1, workers)
        self._given = given
        self._start_server = start_server
        self._grace_s = grace_s
        self._ready_timeout_s = ready_timeout_s
        self._servers: list[_Server | None] = [None] * self.workers
        self._locks = [threading.Lock() for _ in range(self.workers)]
        self._protections: dict[str, bool | str] | None = None
        self._closed = False

    @property
    def protections(self) -> dict[str, bool | str]:
        """What the servers apply: {name: True | why it is missing} (starts a server if none runs)."""
        if self._protections is None:
            with self._locks[0]:
                self._server(0)
        assert self._protections is not None
        return dict(self._protections)

    def start(self) -> None:
        """Start every worker's server now, without waiting for it to be ready: the caller's own
        preparation then hides the start-up (a container's most). A server that cannot start is
        started again when its worker is first used, which reports why."""
        for worker in range(self.workers):
            with self._locks[worker]:
                if self._servers[worker] is None and not self._closed:
                    try:
                        self._servers[worker] = _Server.launch(self._start_server, worker)
                    except ServerFailure:
                        pass

    def run_batch(self, programs: Sequence[Program]) -> Iterator[tuple[int, Verdict]]:
        """Yield (index, verdict) in completion order; timeouts are re-run once, alone, at the end."""
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        return self._run_batch(programs)

    def close(self) -> None:
        """Stop every server: each kills what still runs and removes its cgroups and scratch."""
        self._closed = True
        servers = []
        for worker in range(self.workers):
            with self._locks[worker]:
                server, self._servers[worker] = self._servers[worker], None
            if server is not None:
                server.close_stdin()
                servers.append(server)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for server in servers:
            server.wait_or_kill(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ForkServerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def server_processes(self) -> list[subprocess.Popen[bytes]]:
        """The running servers' processes (for tests and diagnostics)."""
        return [server.proc for server in self._servers if server is not None and server.proc.poll() is None]

    # --- batches ----------------------------------------------------------------------------

    def _run_batch(self, programs: Sequence[Program]) -> Iterator[tuple[int, Verdict]]:
        tasks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        results: queue.SimpleQueue[tuple[int, Verdict]] = queue.SimpleQueue()
        cancel = threading.Event()
        count = len(programs)
        threads = [
            threading.Thread(
                target=self._work,
                args=(worker, programs, tasks, results, cancel),
                name=f"sandbox-worker-{worker}",
                daemon=True,
            )
            for worker in range(min(self.workers, count))
        ]
        handed_out = in_flight = 0
        timeouts: list[int] = []
        finished = False
        try:
            for thread in threads:
                thread.start()
            while True:
                while in_flight < 2 * len(threads) and handed_out < count:
                    tasks.put(handed_out)
                    handed_out += 1
                    in_flight += 1
                if not in_flight:
                    break
                index, verdict = results.get()
                in_flight -= 1
                if verdict.status == TIMEOUT:
                    timeouts.append(index)  # load from the other programs can cause a timeout
                else:
                    yield index, verdict
            for _ in threads:
                tasks.put(None)
            for thread in threads:
                thread.join()
            for index in timeouts:  # alone: every other worker is idle now
                with self._locks[0]:
                    verdict = self._execute(0, programs[index], cancel)
                yield index, verdict
            finished = True
        finally:
            if not finished:  # the caller stopped early: nothing of this batch may keep running
                cancel.set()
                self._interrupt()
                for _ in threads:
                    tasks.put(None)
                for thread in threads:
                    thread.join()

    def _work(
        self,
        worker: int,
        programs: Sequence[Program],
        tasks: queue.SimpleQueue[int | None],
        results: queue.SimpleQueue[tuple[int, Verdict]],
        cancel: threading.Event,
    ) -> None:
        while (index := tasks.get()) is not None:
            try:
                with self._locks[worker]:
                    verdict = self._execute(worker, programs[index], cancel)
            except Exception as exc:  # noqa: BLE001 - a verdict must come back for every index
                log.exception("sandbox: worker %d failed", worker)
                verdict = Verdict(SANDBOX_ERROR, f"{type(exc).__name__}: {exc}")
            results.put((index, verdict))

    def _execute(self, worker: int, program: Program, cancel: threading.Event) -> Verdict:
        """Run one program on `worker`'s server; on the sandbox's own failure, once more."""
        problem = ""
        for _ in range(2):
            if cancel.is_set():
                return Verdict(SANDBOX_ERROR, "cancelled")
            try:
                server = self._server(worker)
                if cancel.is_set():  # interrupted while the server was starting: _interrupt missed it
                    return Verdict(SANDBOX_ERROR, "cancelled")
                verdict = server.execute(program, self._grace_s)
            except ServerFailure as exc:
                problem = str(exc)
                if not cancel.is_set():
                    log.warning("sandbox: fork server %d failed (%s); restarting it", worker, problem)
                self._discard(worker)
                continue
            if verdict.status != SANDBOX_ERROR:
                return verdict
            problem = verdict.detail
        return Verdict(SANDBOX_ERROR, problem)

    def _interrupt(self) -> None:
        """Make every busy server stop what it runs: EOF makes it kill everything and exit."""
        for server in self._servers:
            if server is not None:
                server.close_stdin()

    # --- servers ----------------------------------------------------------------------------

    def _server(self, worker: int) -> _Server:
        """`worker`'s server, started if need be, once ready. Call with self._locks[worker] held."""
        server = self._servers[worker]
        if server is not None and server.usable():
            if server.protections is None:
                self._await_ready(worker, server)
            return server
        if server is not None:
            self._discard(worker)
        if self._closed:
            raise ServerFailure("the sandbox is closed")
        server = self._servers[worker] = _Server.launch(self._start_server, worker)
        self._await_ready(worker, server)
        return server

    def _await_ready(self, worker: int, server: _Server) -> None:
        try:
            protections = server.await_ready(self._ready_timeout_s)
        except BaseException:
            self._discard(worker)
            raise
        self._note(protections)

    def _discard(self, worker: int) -> None:
        server, self._servers[worker] = self._servers[worker], None
        if server is not None:
            server.kill()

    def _note(self, protections: dict[str, bool | str]) -> None:
        protections = {**protections, **{name: True for name in self._given if name in protections}}
        if self._protections is None:
            self._protections = protections
        missing = {name: why for name, why in protections.items() if why is not True}
        if missing and not _warned.is_set():
            _warned.set()
            log.warning(
                "sandbox degraded, %d protection(s) missing: %s",
                len(missing),
                "; ".join(f"{name} ({why})" for name, why in missing.items()),
            )


class _Server:
    """One fork server: newline-delimited JSON over its stdin and stdout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is None or proc.stdout is None:
            raise ServerFailure("the server was started without stdin and stdout pipes")
        self.proc = proc
        self.buffer = b""
        self.next_id = 0
        self.protections: dict[str, bool | str] | None = None  # None until the server says it is ready
        self.broken = False

    @classmethod
    def launch(cls, start_server: StartServer, worker: int) -> _Server:
        try:
            return cls(start_server(worker))
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerFailure(f"cannot start a fork server: {type(exc).__name__}: {exc}") from None

    def await_ready(self, timeout_s: float) -> dict[str, bool | str]:
        ready = self._read_message(time.monotonic() + timeout_s)
        protections = ready.get("protections")
        if ready.get("ready") is not True or not isinstance(protections, dict):
            raise ServerFailure(f"the fork server did not say it was ready: {str(ready)[:200]}")
        self.protections = {str(name): value if value is True else str(value) for name, value in protections.items()}
        return self.protections

    def usable(self) -> bool:
        return not self.broken and self.proc.poll() is None

    def execute(self, program: Program, grace_s: float) -> Verdict:
        self.next_id += 1
        request = {"id": self.next_id, "source": program.source, "limits": dataclasses.asdict(program.limits)}
        try:
            self._send(json.dumps(request).encode() + b"\n")
            answer = self._read_message(time.monotonic() + program.limits.timeout_s + grace_s)
        except ServerFailure:
            self.broken = True
            raise
        status, detail, duration = answer.get("status"), answer.get("detail"), answer.get("duration_s")
        if answer.get("id") != self.next_id or status not in STATUSES or not isinstance(detail, str):
            self.broken = True
            raise ServerFailure(f"the fork server answered out of turn: {str(answer)[:200]}")
        return Verdict(status, detail, float(duration) if isinstance(duration, (int, float)) else 0.0)

    def _send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: stdin already closed
            raise ServerFailure(f"cannot write to the fork server: {exc} ({self._state()})") from None

    def _read_message(self, deadline: float) -> dict:
        line = self._read_line(deadline)
        try:
            message = json.loads(line)
        except ValueError:
            raise ServerFailure(f"the fork server wrote something else than JSON: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise ServerFailure(f"the fork server wrote something else than an object: {line[:200]!r}")
        return message

    def _read_line(self, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerFailure(f"the fork server did not answer in time ({self._state()})")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise ServerFailure(f"the fork server ended ({self._state()})")
            self.buffer += chunk
            if len(self.buffer) > LINE_CAP:
                raise ServerFailure("the fork server wrote an over-long line")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def _state(self) -> str:
        code = self.proc.poll()
        return "still running" if code is None else f"exit status {code}"

    def close_stdin(self) -> None:
        """EOF: the server kills what runs, cleans up and exits; it takes no more programs."""
        self.broken = True
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass

    def wait_or_kill(self, timeout_s: float) -> None:
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def kill(self) -> None:
        self.broken = True
        self.close_stdin()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("sandbox: fork server %d did not die", self.proc.pid)
        self._close_pipes()

    def _close_pipes(self) -> None:
        try:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        except OSError:
            pass
