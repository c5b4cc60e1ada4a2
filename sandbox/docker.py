"""The docker sandbox: the fork server (sandbox/forkserver.py) inside long-lived containers.

One container per worker, started once (about 0.4 s, all workers at once) and fed programs over
its stdin for as long as the sandbox lives: a container start is paid per worker, never per
program. Each container is the outer boundary around the fork server's own per-execution
protections (rlimits, no_new_privs, seccomp, the verdict channel, kill-everything after each run):
- no network (`--network none`: loopback only, its own) and no IPC sharing (`--ipc none`);
- a read-only root; the only writable place is a small tmpfs at /tmp (nosuid, nodev, noexec);
- memory (swap included) and pids limits a little above one program's, one CPU;
- all capabilities dropped and no-new-privileges, under the engine's default seccomp profile;
- programs run as an unprivileged uid with no capabilities at all. By default (separate_uid) that
  uid is not the fork server's: the server runs as the container's root with only SETUID,
  SETGID, CHOWN, DAC_OVERRIDE and KILL, and starts each program as uid 65534, which makes the
  program non-dumpable, so nothing it starts can read its memory (and the verdict key in it)
  through /proc/<pid>/mem. With separate_uid=False everything runs as the image's uid 10001 with
  no capability at all, and a program that execs a helper can read that key and forge a pass
  (shown by tests/sandbox/test_docker.py): use it only where the engine refuses the capabilities;
- the fork server is PID 1 of the container's PID namespace (no --init): the kernel drops signals
  sent to it from inside the container unless it handles them, SIGKILL included, every orphan a
  program leaves is reparented to it, and kill(-1) after each program ends them all.
Per-program limits (CPU time, memory, file size, processes) come from the fork server's rlimits
inside; the container's limits are the backstop for the whole worker.

Cleanup: containers carry labels naming their owner (this process: pid and start time, host,
boot, PID namespace). close() (also from __exit__, so Ctrl-C through a `with` block) and an atexit
hook remove them. The `docker run` clients run in their own session, so a Ctrl-C in the terminal
reaches only the harness, which then closes in order; if the harness dies, the clients see EOF,
the fork servers see EOF and exit, and `--rm` removes the containers; whatever remains after a
crash is removed by the next DockerSandbox started on this host (its owner is gone).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import os
import secrets
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Sequence

from harness.errors import UsageError

from .base import Limits
from .image.engine import DEFAULT_IMAGE, EngineError, docker, docker_cli, require_engine, require_image
from .pool import ForkServerPool

log = logging.getLogger("sandbox")

SANDBOX_LABEL = "harness.sandbox"
OWNER_LABEL = "harness.owner"  # "<pid>-<start time in clock ticks after boot>"
HOST_LABEL = "harness.host"
BOOT_LABEL = "harness.boot"
PIDNS_LABEL = "harness.pidns"
INSTANCE_LABEL = "harness.instance"  # one DockerSandbox
USER = "10001:10001"  # the image's own user: everything in the container runs as it (separate_uid=False)
# separate_uid=True: the fork server runs as root of the container with just these capabilities,
# to start each program as uid 65534 (setuid/setgid), own its scratch directory (chown), remove
# what the program left there (dac_override) and kill whatever the program started (kill).
SERVER_CAPABILITIES = ("SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "KILL")
SERVER = ("python3", "-I", "-S", "-B", "/opt/sandbox/forkserver.py")
# What the fork server cannot set up itself inside a container but the container gives every
# program in it (one program at a time per container): its own mount namespace (the read-only
# root and the /tmp tmpfs), IPC namespace (--ipc none), UTS namespace, and pids and memory
# cgroups (--pids-limit, --memory; per container, a little above one program's limits).
CONTAINER_GIVES = ("mount_namespace", "ipc_namespace", "uts_namespace", "pids_cgroup", "memory_cgroup")
TMPFS_MB = 64
MEMORY_HEADROOM_MB = 256  # the fork server, the /tmp tmpfs (it counts as memory) and slack
PIDS_HEADROOM = 32
REMOVE_TIMEOUT_S = 30.0
CLOSE_GRACE_S = 2.0
STDERR_TAIL = 4096


def _read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The start time of `pid` in clock ticks after boot ("" if it is gone): with the pid, a unique owner."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rpartition(")")[2].split()[19] if stat else ""


def _identity() -> dict[str, str]:
    pidns = ""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass
    return {
        OWNER_LABEL: f"{os.getpid()}-{_start_time(os.getpid())}",
        HOST_LABEL: socket.gethostname(),
        BOOT_LABEL: _read("/proc/sys/kernel/random/boot_id"),
        PIDNS_LABEL: pidns,
    }


def _owner_gone(labels: dict[str, str], me: dict[str, str]) -> bool:
    """Whether the harness process that started a container is certainly gone."""
    if labels.get(HOST_LABEL) != me[HOST_LABEL]:
        return False  # another machine sharing this engine: its containers are its own business
    if labels.get(BOOT_LABEL) != me[BOOT_LABEL]:
        return True  # started before this machine's last boot
    if labels.get(PIDNS_LABEL) != me[PIDNS_LABEL]:
        return False  # a harness in another PID namespace (another container): cannot check it
    pid, _, start = labels.get(OWNER_LABEL, "").partition("-")
    if not pid.isdigit():
        return True
    return _start_time(int(pid)) != start  # gone, or its pid now belongs to another process


def labelled_containers(*filters: str) -> list[tuple[str, dict[str, str]]]:
    """(id, labels) of every sandbox container in the engine, running or not, narrowed by `label=` filters."""
    args = ["ps", "-a", "--no-trunc", "--filter", f"label={SANDBOX_LABEL}=1"]
    for extra in filters:
        args += ["--filter", f"label={extra}"]
    found = []
    for line in docker(*args, "--format", "{{.ID}}\t{{.Labels}}").splitlines():
        cid, _, text = line.partition("\t")
        labels = dict(item.partition("=")[::2] for item in text.split(",") if "=" in item)
        if cid:
            found.append((cid, labels))
    return found


def reap_stale_containers() -> int:
    """Remove the sandbox containers whose harness process is gone; return how many."""
    me = _identity()
    stale = [cid for cid, labels in labelled_containers() if _owner_gone(labels, me)]
    if stale:
        _remove(stale)
        log.info("docker sandbox: removed %d container(s) left by a harness that is gone", len(stale))
    return len(stale)


def _remove(ids: Sequence[str]) -> None:
    """`docker rm -f` the containers, then wait until the engine no longer lists them."""
    try:
        docker("rm", "-f", *ids, timeout=REMOVE_TIMEOUT_S)
    except EngineError:
        pass  # already gone, or --rm is removing it: checked below
    deadline = time.monotonic() + REMOVE_TIMEOUT_S
    wanted = set(ids)
    while time.monotonic() < deadline:
        try:
            left = {cid for cid in docker("ps", "-aq", "--no-trunc").split()} & wanted
        except EngineError:
            return
        if not left:
            return
        try:
            docker("rm", "-f", *left, timeout=REMOVE_TIMEOUT_S)
        except EngineError:
            pass
        time.sleep(0.1)
    log.warning("docker sandbox: containers %s could not be removed", ", ".join(sorted(wanted)))


class DockerSandbox(ForkServerPool):
    """A ForkServerPool whose fork servers each run in their own long-lived container."""

    def __init__(
        self,
        workers: int | None = None,
        image: str = DEFAULT_IMAGE,
        *,
        memory_mb: int = Limits().memory_mb,
        max_processes: int = Limits().max_processes,
        separate_uid: bool = True,
    ) -> None:
        require_engine()
        require_image(image)
        super().__init__(max(1, workers or os.cpu_count() or 1), self._start_server, given=CONTAINER_GIVES)
        self.image = image
        self.separate_uid = separate_uid
        self._memory_mb = memory_mb + MEMORY_HEADROOM_MB
        self._pids = max_processes + PIDS_HEADROOM
        self._identity = _identity()
        self._instance = secrets.token_hex(6)
        self._lock = threading.Lock()
        self._clients: dict[str, subprocess.Popen[bytes]] = {}  # container name -> its `docker run` client
        self._shut = False
        try:
            reap_stale_containers()
        except EngineError as exc:
            raise UsageError(f"docker sandbox: cannot list containers ({exc})") from None
        _open.add(self)
        self.start()  # every container at once: a start is mostly waiting on the engine

    def close(self) -> None:
        """Stop the fork servers, then make sure that none of this sandbox's containers is left."""
        if self._shut:
            return
        self._shut = True
        # The pool closes the servers in order (EOF: each kills what runs and exits, and --rm removes
        # its container); if that takes more than a moment, removing the containers cuts it short.
        watchdog = threading.Timer(CLOSE_GRACE_S, self._kill_containers)
        watchdog.daemon = True
        watchdog.start()
        try:
            super().close()
        finally:
            watchdog.cancel()
            self._remove_containers()
            _open.discard(self)

    def __enter__(self) -> DockerSandbox:
        return self

    def server_processes(self) -> list[ContainerProcess]:  # type: ignore[override]
        """The fork servers as host processes: each container's PID 1, whose descendants are the
        programs' processes (tests look for leftovers there)."""
        with self._lock:
            names = [name for name, client in self._clients.items() if client.poll() is None]
        if not names:
            return []
        try:
            pids = docker("inspect", "--format", "{{.State.Pid}}", *names).split()
        except EngineError:
            return []
        return [ContainerProcess(int(pid)) for pid in pids if pid.isdigit() and int(pid) > 0]

    def container_command(self, name: str, worker: int) -> list[str]:
        """The `docker run` command line of one worker's container."""
        labels = {SANDBOX_LABEL: "1", INSTANCE_LABEL: self._instance, **self._identity, "harness.worker": str(worker)}
        command = [docker_cli(), "run", "--interactive", "--rm", "--name", name, "--sig-proxy=false"]
        command += ["--log-driver", "none", "--network", "none", "--ipc", "none", "--hostname", "sandbox"]
        command += ["--read-only", "--tmpfs", f"/tmp:rw,nosuid,nodev,noexec,size={TMPFS_MB}m,mode=1777"]
        command += ["--memory", f"{self._memory_mb}m", "--memory-swap", f"{self._memory_mb}m"]
        command += ["--pids-limit", str(self._pids), "--cpus", "1"]
        command += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--workdir", "/tmp"]
        if self.separate_uid:
            command += ["--user", "0:0", *(arg for cap in SERVER_CAPABILITIES for arg in ("--cap-add", cap))]
        else:
            command += ["--user", USER]
        for key, value in labels.items():
            command += ["--label", f"{key}={value}"]
        return [*command, self.image, *SERVER]

    def _start_server(self, worker: int) -> subprocess.Popen[bytes]:
        """The pool's start_server: a container for `worker`, whose client's stdin/stdout are the fork server's."""
        with self._lock:
            if self._shut:
                raise OSError("the docker sandbox is closed")
            name = f"harness-sandbox-{os.getpid()}-{self._instance}-{worker}-{secrets.token_hex(2)}"
            client = subprocess.Popen(
                self.container_command(name, worker),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C in the terminal is the harness's to handle
            )
            self._clients[name] = client
        threading.Thread(target=self._watch, args=(name, client), name=f"docker-{worker}", daemon=True).start()
        return client

    def _watch(self, name: str, client: subprocess.Popen[bytes]) -> None:
        """Drain the client's stderr (keeping its tail) and say why a container ended early."""
        stderr = client.stderr
        assert stderr is not None
        tail: collections.deque[bytes] = collections.deque()
        size = 0
        try:
            for chunk in iter(lambda: stderr.read1(1024), b""):
                tail.append(chunk)
                size += len(chunk)
                while size - len(tail[0]) >= STDERR_TAIL:
                    size -= len(tail.popleft())
        except (OSError, ValueError):
            pass
        finally:
            stderr.close()
        code = client.wait()
        if code != 0 and not self._shut:
            text = b"".join(tail).decode(errors="replace").strip().splitlines()
            log.warning("docker sandbox: container %s ended (status %d): %s", name, code, " | ".join(text[-3:]))

    def _kill_containers(self) -> None:
        """Remove every container of this sandbox that is still there."""
        try:
            left = [cid for cid, _ in labelled_containers(f"{INSTANCE_LABEL}={self._instance}")]
            if left:
                _remove(left)
        except (UsageError, EngineError) as exc:  # the engine went away: nothing more can be done here
            log.warning("docker sandbox: could not check for leftover containers (%s)", exc)

    def _remove_containers(self) -> None:
        """Close the clients (EOF: the fork servers exit), remove what is left, reap the clients."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            try:
                if client.stdin is not None:
                    client.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + CLOSE_GRACE_S
        for client in clients:
            try:
                client.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # A client of `docker run --rm` that exits cleanly has seen its container removed.
        if any(client.returncode != 0 for client in clients):
            self._kill_containers()
        for client in clients:
            if client.poll() is None:
                client.kill()
            client.wait()
            try:
                if client.stdout is not None:
                    client.stdout.close()
            except OSError:
                pass


@dataclasses.dataclass(frozen=True)
class ContainerProcess:
    """A container's PID 1 (the fork server) as a host process."""

    pid: int


_open: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Leave no container behind when the interpreter exits with a sandbox still open."""
    for sandbox in list(_open):
        try:
            sandbox.close()
        except Exception:  # noqa: BLE001 - at exit, keep closing the others
            log.exception("docker sandbox: close at exit failed")
