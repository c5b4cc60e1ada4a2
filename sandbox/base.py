"""What runs in a sandbox (Program), what comes back (Verdict), and the Sandbox protocol.

A verdict from generated code is data, never an exception in the harness: every way a
program can end maps to one of STATUSES.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

PASSED = "passed"
FAILED = "failed"  # an assertion in the task's tests failed
ERROR = "error"  # any other exception; detail names its type
SYNTAX_ERROR = "syntax_error"
TIMEOUT = "timeout"
MEMORY = "memory"
CRASHED = "crashed"  # ended by a signal, or exited without reporting
SANDBOX_ERROR = "sandbox_error"  # the harness's own fault: retried, never a model failure

STATUSES = (PASSED, FAILED, ERROR, SYNTAX_ERROR, TIMEOUT, MEMORY, CRASHED, SANDBOX_ERROR)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one execution."""

    timeout_s: float = 10.0  # wall clock, enforced from outside: the backstop
    cpu_time_s: float | None = None  # CPU seconds (None: timeout_s); tasks calibrate it per problem
    memory_mb: int = 1024
    max_processes: int = 32
    max_file_mb: int = 16


@dataclass(frozen=True)
class Program:
    """A whole program to execute: the candidate code followed by the task's tests.

    The program passes only if running `source` to its end raises nothing.
    """

    source: str
    limits: Limits = Limits()


@dataclass(frozen=True)
class Verdict:
    status: str
    detail: str = ""  # exception type and first line of its message, or the signal
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == PASSED


class Sandbox(Protocol):
    """Runs programs in isolation. Registered under the entry-point group `harness.sandboxes`."""

    def run_batch(self, programs: Sequence[Program]) -> Iterator[tuple[int, Verdict]]:
        """Yield (index into `programs`, verdict) for every program, in completion order."""
        ...

    def close(self) -> None:
        """Release workers; nothing the programs started may outlive this call."""
        ...
