"""Per-execution cgroups (v1 or v2): process-count and memory limits, and a way to kill
every process an execution started, including ones that left its process group.

Each execution gets <own cgroup>/harness-sandbox-<pidns>-<pid>/<execution>. Folders left by a
harness that was SIGKILLed mid-run are found by that name, their processes killed and the
folders removed, when the next sandbox starts.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import signal
import time
from pathlib import Path

from .base import Limits

log = logging.getLogger("sandbox")
MB = 1024 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")

# What is lost when a cgroup controller cannot be had, for the one warning per process.
WITHOUT = {
    "pids": "the process count falls back to RLIMIT_NPROC (which counts all processes of the "
    "user and does not bind for root), and processes that leave the process group (setsid, "
    "double fork) can outlive their execution",
    "memory": "memory falls back to per-process RLIMIT_AS (a program that forks gets memory_mb "
    "per process), and out-of-memory kills are reported as crashed",
}
_exec_ids = itertools.count()


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


# Cgroup and scratch directories are named after the harness process (and its pid namespace,
# so that a harness only ever judges pids it can see): one left by a harness that was
# SIGKILLed mid-run is found, its processes killed and it removed when the next sandbox starts.
OWNER = f"{_pid_namespace()}-"


class Cgroups:
    """Parents of the per-execution cgroups, nested in this process's own cgroups:
    <own cgroup>/harness-sandbox-<pidns>-<pid>/<execution>, one per controller in v1, one in v2."""

    def __init__(self) -> None:
        self.v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
        self.parents: dict[str, Path] = {}  # controller -> parent directory
        self.missing: dict[str, str] = {}  # controller -> why it is missing
        for controller in ("pids", "memory"):
            try:
                self.parents[controller] = self._make_parent(controller)
                self._probe(controller)
            except OSError as exc:
                self.missing[controller] = f"{type(exc).__name__}: {exc.strerror or exc}"
                parent = self.parents.pop(controller, None)
                if parent is not None and parent not in self.parents.values():
                    _rmdir_quietly(parent)

    def _make_parent(self, controller: str) -> Path:
        mount = CGROUP_ROOT if self.v2 else CGROUP_ROOT / controller
        own = mount / _own_cgroup(controller, self.v2).lstrip("/")
        base = own if own.is_dir() else mount  # a container may show its cgroup as the root
        _remove_stale_cgroups(base, self.v2)
        parent = base / f"harness-sandbox-{OWNER}{os.getpid()}"
        if self.v2:  # the controller must be enabled on the way down
            (base / "cgroup.subtree_control").write_text(f"+{controller}")
        parent.mkdir(exist_ok=True)
        if self.v2:
            (parent / "cgroup.subtree_control").write_text(f"+{controller}")
        return parent

    def _probe(self, controller: str) -> None:
        """Fail now, not at every execution, where limits cannot be written."""
        cgroup = self.create(Limits())
        assert cgroup is not None
        cgroup.remove()

    def create(self, limits: Limits) -> Cgroup | None:
        """A fresh cgroup (a directory per v1 controller) with this execution's limits."""
        if not self.parents:
            return None
        name = f"x{next(_exec_ids)}-{secrets.token_hex(4)}"
        dirs = sorted({parent / name for parent in self.parents.values()})
        cgroup = Cgroup(dirs, pids="pids" in self.parents, v2=self.v2)
        try:
            for directory in dirs:
                directory.mkdir()
            if "pids" in self.parents:
                _write(self.parents["pids"] / name / "pids.max", limits.max_processes)
            if "memory" in self.parents:
                memory, limit = self.parents["memory"] / name, limits.memory_mb * MB
                _write(memory / ("memory.max" if self.v2 else "memory.limit_in_bytes"), limit)
                try:  # no swapping around the limit, where swap accounting exists
                    _write(
                        memory / ("memory.swap.max" if self.v2 else "memory.memsw.limit_in_bytes"),
                        0 if self.v2 else limit,
                    )
                except OSError:
                    pass
        except BaseException:
            cgroup.remove()
            raise
        return cgroup

    def close(self) -> None:
        for parent in set(self.parents.values()):
            _rmdir_quietly(parent)  # fails while another sandbox in this process uses it


class Cgroup:
    """The cgroup directories of one execution."""

    def __init__(self, dirs: list[Path], pids: bool, v2: bool) -> None:
        self.dirs, self.pids, self.v2 = dirs, pids, v2

    def join(self, pid: int) -> None:
        for directory in self.dirs:
            _write(directory / "cgroup.procs", pid)

    def kill(self) -> None:
        """SIGKILL every member until none is left (members may be forking meanwhile)."""
        kill_file = self.dirs[0] / "cgroup.kill"  # v2, Linux 5.14+
        if self.v2 and kill_file.exists():
            _write(kill_file, 1)
        for _ in range(1000):
            try:
                members = (self.dirs[0] / "cgroup.procs").read_text().split()
            except OSError:
                return
            if not members:
                return
            for pid in members:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)

    def oom_killed(self) -> bool:
        """Whether the kernel's out-of-memory killer killed a member."""
        for directory in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    lines = (directory / name).read_text().splitlines()
                except OSError:
                    continue
                for line in lines:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip() not in ("", "0"):
                        return True
        return False

    def remove(self) -> None:
        """Remove the directories; members that are still exiting may take a moment."""
        for directory in self.dirs:
            for attempt in range(200):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt % 20 == 19:
                        self.kill()
                    time.sleep(0.005)
            else:
                log.warning("could not remove cgroup %s", directory)


def _own_cgroup(controller: str, v2: bool) -> str:
    """This process's cgroup path for `controller`, from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if (v2 and number == "0") or (not v2 and controller in controllers.split(",")):
            return path
    raise FileNotFoundError(f"no {controller} cgroup in /proc/self/cgroup")


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _rmdir_quietly(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def stale_dirs(base: Path, prefix: str) -> list[Path]:
    """Directories under `base` named for a harness process of this pid namespace that is gone."""
    found = []
    for path in base.glob(f"{prefix}{OWNER}*"):
        pid = path.name.removeprefix(prefix + OWNER).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            found.append(path)
    return found


def _remove_stale_cgroups(base: Path, v2: bool) -> None:
    """Kill what a dead harness left running in its cgroups, then remove them."""
    for parent in stale_dirs(base, "harness-sandbox-"):
        try:
            for child in [child for child in parent.iterdir() if child.is_dir()]:
                stale = Cgroup([child], pids=True, v2=v2)
                stale.kill()
                stale.remove()
            parent.rmdir()
        except OSError:  # another harness is cleaning it up at the same time
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
