"""The embedded process sandbox: fork servers (sandbox/forkserver.py) on this machine.

A ForkServerPool whose servers are `python -I -S -B sandbox/forkserver.py`, one per worker,
started with an empty environment in their own session (a Ctrl-C in the terminal is the
harness's to handle; the servers stop when it closes them or, if it dies, at EOF). Everything
that protects an execution (namespaces, read-only root, tmpfs scratch, unprivileged uid,
cgroups, rlimits, no_new_privs, seccomp, the verdict channel) lives in forkserver.py;
`harness sandbox check` (sandbox/check.py) shows which protections this machine gives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .pool import ForkServerPool

FORKSERVER = Path(__file__).with_name("forkserver.py")


class ProcessSandbox(ForkServerPool):
    """Runs each program in a fresh fork of a per-worker fork server."""

    def __init__(self, workers: int | None = None) -> None:
        super().__init__(max(1, workers or os.cpu_count() or 1), self._start_server)
        self.start()  # the servers start while the caller prepares its programs

    @property
    def missing_protections(self) -> tuple[str, ...]:
        """Names of the protections this machine does not give (see `protections` for why)."""
        return tuple(name for name, value in self.protections.items() if value is not True)

    def _start_server(self, worker: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(FORKSERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={},
            start_new_session=True,
        )
