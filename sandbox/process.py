"""The embedded process sandbox: one fresh interpreter per program, limited from outside.

Each execution:
- starts `python -I -S -B sandbox/runner.py FD` with an empty environment, stdout and stderr
  discarded (output is never evidence, and discarding it caps it), its own session and
  process group, and a fresh 0700 scratch directory as its working directory;
- joins fresh cgroups (pids.max = max_processes, memory limit = memory_mb; v1 or v2) and gets
  rlimits (AS, CPU, FSIZE, NOFILE, CORE; NPROC only where no pids cgroup exists) before the
  program is sent to it. Limits are set from the parent with prlimit(2), not in a preexec_fn:
  preexec_fn is unsafe in a threaded parent, and the runner cannot run any code of the program
  before the parent sends it, which happens only once cgroups and limits are in place;
- is waited for with a wall-clock limit; then everything it started is SIGKILLed (cgroup,
  then process group), the runner is reaped, and its cgroups and scratch directory removed;
- is judged from the runner's record on a private pipe, accepted only with this execution's
  nonce (see runner.py for what that does and does not stop).

Not here yet (design.md; a later hardening issue): pid/mount/net/ipc/uts namespaces, a
read-only root, an unprivileged uid, no_new_privs, seccomp, a fork server. Until then a program
runs with the harness's uid and network: it can signal the harness (os.kill(os.getppid(), 9)),
read what that uid can read, and, as root, move itself out of its cgroup.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import logging
import math
import os
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .base import CRASHED, ERROR, FAILED, MEMORY, PASSED, SANDBOX_ERROR, SYNTAX_ERROR, TIMEOUT, Limits, Program, Verdict
from .cgroups import MB, OWNER, WITHOUT, Cgroup, Cgroups, stale_dirs

log = logging.getLogger("sandbox")

RUNNER = Path(__file__).with_name("runner.py")
REPORT_CAP = 64 * 1024  # bytes read from the result pipe; a record is well under 1 KB
OPEN_FILES = 64
RUNNER_STATUSES = frozenset({PASSED, FAILED, ERROR, SYNTAX_ERROR, MEMORY})
_warned = threading.Event()


class _StartFailure(Exception):
    """The runner never started the program: the sandbox's fault, never the program's."""


class ProcessSandbox:
    """Runs each program in its own fresh process, `workers` at a time."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = max(1, workers or os.cpu_count() or 1)
        self._cgroups = Cgroups()
        _remove_stale_scratch()
        self._live = _Live()
        self._executor: cf.ThreadPoolExecutor | None = None
        self._closed = False
        if self._cgroups.missing and not _warned.is_set():
            _warned.set()
            log.warning(
                "process sandbox degraded: no %s",
                "; no ".join(f"{name} cgroup ({why}): {WITHOUT[name]}" for name, why in self._cgroups.missing.items()),
            )

    @property
    def missing_protections(self) -> tuple[str, ...]:
        """Names of the cgroup controllers that could not be had ("pids", "memory")."""
        return tuple(self._cgroups.missing)

    def run_batch(self, programs: Sequence[Program]) -> Iterator[tuple[int, Verdict]]:
        """Yield (index, verdict) in completion order; timeouts are re-run once, alone, at the end."""
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        cancel = threading.Event()
        timeouts: list[int] = []
        parallel = self._run_parallel(programs, cancel)
        try:
            for index, verdict in parallel:
                if verdict.status == TIMEOUT:
                    timeouts.append(index)  # load from the other programs can cause a timeout
                else:
                    yield index, verdict
            for index in timeouts:
                yield index, self._execute(programs[index], cancel)
        finally:  # also when the caller stops early: nothing of this batch may keep running
            cancel.set()
            self._live.kill(cancel)
            parallel.close()

    def close(self) -> None:
        """Kill whatever still runs, stop the workers and remove this process's cgroups."""
        self._closed = True
        self._live.kill(None)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._cgroups.close()

    def __enter__(self) -> ProcessSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run_parallel(self, programs: Sequence[Program], cancel: threading.Event) -> Iterator[tuple[int, Verdict]]:
        """Run on the workers, keeping only a few executions queued (results are not hoarded)."""
        if self._executor is None:
            self._executor = cf.ThreadPoolExecutor(self._workers, thread_name_prefix="sandbox")
        executor = self._executor
        queue = iter(enumerate(programs))
        pending: dict[cf.Future[Verdict], int] = {}

        def submit(count: int) -> None:
            for index, program in itertools.islice(queue, count):
                pending[executor.submit(self._execute, program, cancel)] = index

        try:
            submit(2 * self._workers)
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                submit(len(done))
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()
            cf.wait(pending)  # the running ones were killed; let them clean up

    def _execute(self, program: Program, cancel: threading.Event) -> Verdict:
        """Run one program; when the sandbox itself fails, retry once, then say so."""
        problem = ""
        for _ in range(2):
            if cancel.is_set():
                return Verdict(SANDBOX_ERROR, "cancelled")
            try:
                return _Execution(program, self._cgroups, self._live, cancel).run()
            except (OSError, _StartFailure) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                log.warning("sandbox error: %s", problem)
        return Verdict(SANDBOX_ERROR, problem)


class _Execution:
    """One program in one fresh process: start, wait, clean up, judge."""

    def __init__(self, program: Program, cgroups: Cgroups, live: _Live, cancel: threading.Event):
        self.program, self.limits = program, program.limits
        self.cgroups, self.live, self.cancel = cgroups, live, cancel
        self.nonce = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroup: Cgroup | None = None
        self.scratch = ""
        self.read_fd = -1
        self.report = b""
        self.cpu_s: float | None = None
        self.oom = False
        self.duration_s = 0.0

    def run(self) -> Verdict:
        """Raises OSError or _StartFailure when no program ran, so the caller may retry."""
        try:
            start = time.monotonic()
            self._start()
            timed_out = _wait_for_exit(self.proc, self.limits.timeout_s - (time.monotonic() - start))
            self.duration_s = time.monotonic() - start
        finally:
            self._clean_up()
        return self._judge(timed_out)

    def _start(self) -> None:
        self.scratch = tempfile.mkdtemp(prefix=f"sandbox-{OWNER}{os.getpid()}-")  # mode 0700
        self.cgroup = self.cgroups.create(self.limits)
        self.read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", str(RUNNER), str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(write_fd,),
                env={},
                cwd=self.scratch,
                start_new_session=True,
            )
        finally:
            os.close(write_fd)  # our copy would keep the pipe open after the child is gone
        self.live.add(self, self.cancel)
        if self.cgroup is not None:
            self.cgroup.join(self.proc.pid)
        _set_rlimits(self.proc.pid, self.limits, nproc=self.cgroup is None or not self.cgroup.pids)
        request = json.dumps({"source": self.program.source, "nonce": self.nonce}).encode()
        assert self.proc.stdin is not None
        with self.proc.stdin:
            self.proc.stdin.write(request)

    def kill(self) -> None:
        """SIGKILL every process of this execution. Called only while the runner is unreaped."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _clean_up(self) -> None:
        if self.proc is not None:
            self.kill()
            self.live.remove(self)  # after this, nobody signals the pid: it may be reused
            self._reap()
        if self.cgroup is not None:
            self.oom = self.cgroup.oom_killed()
            self.cgroup.remove()
        if self.read_fd >= 0:
            self.report = _read_available(self.read_fd)
            os.close(self.read_fd)
        if self.scratch:
            _remove_tree(self.scratch)

    def _reap(self) -> None:
        assert self.proc is not None
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc.returncode is None:
            try:
                _, status, usage = os.wait4(self.proc.pid, 0)
            except ChildProcessError:  # reaped by someone else: Popen's convention
                self.proc.returncode = 0
                return
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_s = usage.ru_utime + usage.ru_stime

    def _judge(self, timed_out: bool) -> Verdict:
        assert self.proc is not None
        started, record = _parse_report(self.report, self.nonce)
        if not started:
            raise _StartFailure(f"the runner ended (code {self.proc.returncode}) before the program")
        if record is not None:
            status, detail = record
        elif timed_out:
            status, detail = TIMEOUT, f"wall clock limit of {self.limits.timeout_s:g}s"
        else:
            status, detail = _unreported(self.proc.returncode, self.cpu_s, self.oom, self.limits)
        return Verdict(status, detail, self.duration_s)


def _wait_for_exit(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    """Wait until the runner exits, without reaping it (its pid keeps naming its process
    group until we have killed the group). True if the wall-clock limit ran out first."""
    assert proc is not None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (Linux < 5.3): Popen polls, and reaps
        try:
            proc.wait(max(0.0, timeout_s))
            return False
        except subprocess.TimeoutExpired:
            return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return not poller.poll(max(0, math.ceil(timeout_s * 1000)))
    finally:
        os.close(pidfd)


def _set_rlimits(pid: int, limits: Limits, nproc: bool) -> None:
    """Apply the per-process limits to the child (never above the limits the harness has)."""
    cpu = math.ceil(limits.timeout_s) + 1  # a backstop: the wall clock is the real limit
    wanted = [
        (resource.RLIMIT_AS, limits.memory_mb * MB, limits.memory_mb * MB),
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU first, SIGKILL a second later
        (resource.RLIMIT_FSIZE, limits.max_file_mb * MB, limits.max_file_mb * MB),
        (resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if nproc:
        wanted.append((resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes))
    for which, soft, hard in wanted:
        _, current = resource.prlimit(pid, which)
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
            soft = min(soft, hard)
        resource.prlimit(pid, which, (soft, hard))


def _read_available(fd: int) -> bytes:
    """Read what the pipe holds, at most REPORT_CAP bytes, without waiting for writers."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    while size < REPORT_CAP:
        try:
            chunk = os.read(fd, REPORT_CAP - size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse_report(data: bytes, nonce: str) -> tuple[bool, tuple[str, str] | None]:
    """(whether the runner started, its (status, detail) record if any), nonce-checked."""
    started, record = False, None
    for line in data.splitlines():
        if nonce.encode() not in line:
            continue
        try:
            fields = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(fields, dict) or fields.get("nonce") != nonce:
            continue
        status, detail = fields.get("status"), fields.get("detail")
        if status == "started":
            started = True
        elif started and record is None and status in RUNNER_STATUSES and isinstance(detail, str):
            record = (status, detail[:200])
    return started, record


def _unreported(returncode: int, cpu_s: float | None, oom: bool, limits: Limits) -> tuple[str, str]:
    """The verdict for a program whose runner ended without a record."""
    if oom:
        return MEMORY, f"killed by the out-of-memory killer ({limits.memory_mb} MB)"
    if returncode >= 0:
        return CRASHED, f"exited with code {returncode} without reporting"
    number = -returncode
    cpu_limit = math.ceil(limits.timeout_s) + 1
    if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu_s is not None and cpu_s >= cpu_limit):
        return TIMEOUT, f"CPU time limit of {cpu_limit}s"
    try:
        return CRASHED, signal.Signals(number).name
    except ValueError:
        return CRASHED, f"signal {number}"


def _remove_tree(path: str) -> None:
    """Remove the scratch directory, even where the program took its own permissions away."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        os.chmod(path, 0o700)
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
        shutil.rmtree(path, ignore_errors=True)


class _Live:
    """Executions whose runner is not yet reaped, so a stopped batch or close() can kill them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[_Execution, threading.Event] = {}

    def add(self, execution: _Execution, batch: threading.Event) -> None:
        with self._lock:
            self._running[execution] = batch
            if batch.is_set():  # the batch was stopped while this one was starting
                execution.kill()

    def remove(self, execution: _Execution) -> None:
        with self._lock:
            self._running.pop(execution, None)

    def kill(self, batch: threading.Event | None) -> None:
        """Kill the executions of one batch, or all of them (batch None)."""
        with self._lock:
            for execution, its_batch in self._running.items():
                if batch is None or its_batch is batch:
                    execution.kill()


def _remove_stale_scratch() -> None:
    for scratch in stale_dirs(Path(tempfile.gettempdir()), "sandbox-"):
        _remove_tree(str(scratch))
