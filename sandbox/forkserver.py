"""The fork server (zygote): runs untrusted programs, one fork per execution, and judges them.

Standard library only and self-contained: it runs as `python3 -I -S -B forkserver.py` on the
host (sandbox/process.py) and as a lone file inside a container (sandbox/docker.py).

Protocol, newline-delimited JSON on stdin/stdout, one request at a time:
- first line out: {"ready": true, "protections": {NAME: true | "why it is missing", ...}};
- in: {"id": int, "source": str, "limits": {"timeout_s", "cpu_time_s" (or null), "memory_mb",
  "max_processes", "max_file_mb"}}; out: {"id", "status", "detail", "duration_s"};
- EOF on stdin: everything still running is killed (its answer: sandbox_error, interrupted),
  scratch removed, exit 0; the launcher then removes the cgroups.

Processes. The launcher (this file, started by the harness) applies what must be applied with
ctypes (namespaces, mounts, no_new_privs, seccomp), then execs a fresh interpreter on this file
with --zygote: the zygote never loads ctypes, so neither does any program forked from it (and
the mount namespace hides _ctypes and CPython's test modules). As root: the launcher unshares a
PID namespace and forks; its child (PID 1 there) unshares the mount, network, IPC and UTS
namespaces, mounts a fresh /proc, bind-remounts every mount read-only (the interpreter's own
directories are bound back over an empty tmpfs where they live under a directory nobody may
enter, such as /root), mounts a small tmpfs on /tmp (nosuid, nodev, noexec: the only writable
place), then becomes the zygote; the launcher waits, then removes the cgroups. Without root (a
container) the launcher execs the zygote in place, keeping whatever the container gives (PID 1,
no network, read-only root, a /tmp tmpfs of its own).

The zygote lives in a cgroup of its own (pids.max, memory limit; set per execution), so that
its children are born in it. Per execution it forks a child which, before any program code:
starts a new session, sends stdio to /dev/null and closes every other descriptor, moves into a
fresh 0700 scratch directory, sets rlimits (CPU, FSIZE, NOFILE, CORE, AS; NPROC where no pids
cgroup or container caps processes), drops to uid/gid 65534 when root (which also makes it
non-dumpable: its /proc/<pid>/mem is closed to it and to anything it starts), and installs
the audit hook described below; the environment it inherits is empty (the zygote cleared it).
The zygote enforces the wall clock, then SIGKILLs everything (as PID 1 of the namespace:
kill(-1); otherwise cgroup, session and descendants), reaps, wipes the scratch, and answers.
Output is never evidence.

The verdict channel. The program (candidate code followed by the task's tests) runs in the
child's main thread inside _execute(). A keeper thread, started first, reads a per-execution
key that the zygote generates only after the fork (so the child never inherits it, and the
zygote keeps only its SHA-256) and closes that pipe before any program code runs. The main
thread hands the keeper its _execute frame; the keeper writes "P <key>" on the record pipe only
once that very frame has moved past the exec() line, which happens only when the module code
ran to its end without raising, i.e. every test ran and passed. Failures (failed, error,
syntax_error, memory) are written by the main thread unauthenticated: forging one gains nothing.
Exit codes, stdout and files are never read as evidence.

What keeps the key and the frame check out of the program's reach is an audit hook (it cannot
be removed) that, in the child, refuses: sys.settrace/setprofile (line jumps over asserts via
frame.f_lineno), sys._current_frames/_current_exceptions and gc.get_objects/get_referrers/
get_referents (the only ways to the keeper thread's frame), code.__new__/code.replace and
marshal (hand-made bytecode reads and writes arbitrary memory), setting __code__, new audit
hooks, importing ctypes and CPython's test modules, opening anything under /proc (other than a
few system-wide files) or directories outside the scratch area, and symlinks out of it.

What a hostile program can still do: (1) corrupt memory through a CPython memory-safety bug
that needs no code object (none is known to us to be usable from plain 3.11 code, but they do
exist in the tracker); (2) test-semantic attacks the channel cannot see: it shares the module
namespace with the tests, so it can rebind what they call (builtins.abs, math.isclose, the
module's globals) or return objects that compare equal to everything; the task must run its
tests on guarded values; (3) without root (the docker backend) a program runs with the
zygote's uid and stays dumpable, so a helper it execs (dd, another interpreter) can read the
program's memory, keeper key included, through /proc/<pid>/mem unless the kernel's Yama
ptrace_scope is 1 or more; giving the container CAP_SETUID and CAP_SETGID lets the zygote drop
to a second uid as on the host, which closes that.
"""

from __future__ import annotations

import _thread
import errno
import fcntl
import hashlib
import json
import math
import os
import resource
import select
import signal
import stat
import sys
import time
from typing import Any, NamedTuple

PROTECTIONS = tuple(
    "pid_namespace net_namespace mount_namespace ipc_namespace uts_namespace readonly_root private_tmpfs "
    "unprivileged_uid pids_cgroup memory_cgroup rlimits no_new_privs seccomp empty_env".split()
)
PASSED, FAILED, ERROR, SYNTAX_ERROR = "passed", "failed", "error", "syntax_error"
TIMEOUT, MEMORY, CRASHED, SANDBOX_ERROR = "timeout", "memory", "crashed", "sandbox_error"
REPORTED = frozenset({FAILED, ERROR, SYNTAX_ERROR, MEMORY})  # what the child may report unauthenticated
DEFAULT_LIMITS = {"timeout_s": 10.0, "cpu_time_s": None, "memory_mb": 1024, "max_processes": 32, "max_file_mb": 16}
SANDBOX_UID = 65534  # nobody
SCRATCH_MB = 64
OPEN_FILES = 64
MB = 1024 * 1024
DETAIL_CHARS = 200
RECORD_LINE_CAP = 4096
_QUOTE = json.encoder.encode_basestring_ascii  # C; the child binds it before the program runs
CGROUP_ROOT = "/sys/fs/cgroup"
# Extension modules that give a program raw memory access, hidden in the mount namespace and
# refused by the audit hook.
DANGEROUS_MODULES = tuple(
    "_ctypes ctypes _testcapi _testinternalcapi _testbuffer _testmultiphase _testsinglephase _testimportmultiple "
    "_testclinic _xxtestfuzz _xxsubinterpreters _xxinterpchannels xxlimited xxlimited_35".split()
)
# Modules programs commonly use, imported once by the zygote so that a fork finds them loaded.
PREIMPORTS = (
    "array bisect collections copy dataclasses datetime decimal fractions functools hashlib heapq "
    "itertools json math operator random re statistics string typing"
).split()
# System-wide /proc files a program may read (nothing per process).
PROC_ALLOWED = frozenset({"/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg", "/proc/uptime"})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--zygote"]:
        return Zygote(json.loads(argv[1])).serve()
    scratch_mb = SCRATCH_MB
    if argv[:1] == ["--scratch-mb"]:
        scratch_mb = int(argv[1])
    return launch(scratch_mb)


# --- cgroups (v1 or v2): the launcher makes the parents, the zygote one child per execution ----


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


# Parents are named after the launcher (and its PID namespace, so that a launcher only ever judges
# pids it can see): those of a launcher that was SIGKILLed are found, their processes killed and
# the folders removed when the next launcher starts.
OWNER = f"{_pid_namespace()}-"


def _write(path: str, value: object) -> None:
    with open(path, "w") as file:
        file.write(str(value))


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def _rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return _read(f"/proc/{pid}/stat").rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def stale_dirs(base: str, prefix: str) -> list[str]:
    """Directories under `base` named for a launcher of this PID namespace that is gone."""
    found = []
    try:
        names = os.listdir(base)
    except OSError:
        return found
    for name in names:
        if not name.startswith(prefix + OWNER):
            continue
        pid = name[len(prefix + OWNER) :].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            found.append(os.path.join(base, name))
    return found


def _own_cgroup(controller: str, v2: bool) -> str:
    for line in _read("/proc/self/cgroup").splitlines():
        number, controllers, path = line.split(":", 2)
        if (v2 and number == "0") or (not v2 and controller in controllers.split(",")):
            return path
    raise FileNotFoundError(errno.ENOENT, f"no {controller} cgroup in /proc/self/cgroup")


def _kill_members(directory: str, spare: str | None = None) -> None:
    """SIGKILL every member of a cgroup but `spare` until none is left (members may be forking)."""
    for _ in range(1000):
        try:
            members = [pid for pid in _read(os.path.join(directory, "cgroup.procs")).split() if pid != spare]
        except OSError:
            return
        if not members:
            return
        for pid in members:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.001)


class Cgroup:
    """Cgroup directories (one per controller in v1, one in v2) to empty and remove."""

    def __init__(self, dirs: list[str], v2: bool) -> None:
        self.dirs, self.v2 = dirs, v2

    def kill(self) -> None:
        """SIGKILL every member until none is left (members may be forking meanwhile)."""
        kill_file = os.path.join(self.dirs[0], "cgroup.kill")  # v2, Linux 5.14+
        if self.v2 and os.path.exists(kill_file):
            try:
                _write(kill_file, 1)
            except OSError:
                pass
        _kill_members(self.dirs[0])

    def remove(self) -> None:
        """Remove the directories; members that are still exiting may take a moment."""
        for directory in self.dirs:
            for attempt in range(200):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt % 20 == 19:
                        self.kill()
                    time.sleep(0.005)


class Cgroups:
    """The parents of the per-execution cgroups: <own cgroup>/harness-sandbox-<pidns>-<pid>."""

    def __init__(self, parents: dict[str, str], v2: bool) -> None:
        self.parents, self.v2 = parents, v2
        self._count = 0

    @classmethod
    def make(cls, owner_pid: int) -> tuple[Cgroups, dict[str, str]]:
        """Create the parents (after reaping those of dead launchers); say why any is missing."""
        v2 = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
        cgroups, missing = cls({}, v2), {}
        for controller in ("pids", "memory"):
            try:
                cgroups.parents[controller] = cgroups._make_parent(controller, owner_pid)
                cgroups.create(DEFAULT_LIMITS).remove()  # fail now, not at every execution
            except OSError as exc:
                missing[controller] = f"{type(exc).__name__}: {exc.strerror or exc}"
                parent = cgroups.parents.pop(controller, None)
                if parent is not None and parent not in cgroups.parents.values():
                    _rmdir_quietly(parent)
        return cgroups, missing

    def _make_parent(self, controller: str, owner_pid: int) -> str:
        mount = CGROUP_ROOT if self.v2 else os.path.join(CGROUP_ROOT, controller)
        own = os.path.join(mount, _own_cgroup(controller, self.v2).lstrip("/"))
        base = own if os.path.isdir(own) else mount  # a container may show its cgroup as the root
        for stale in stale_dirs(base, "harness-sandbox-"):
            _remove_cgroup_tree(stale, self.v2)
        parent = os.path.join(base, f"harness-sandbox-{OWNER}{owner_pid}")
        if self.v2:  # the controller must be enabled on the way down
            _write(os.path.join(base, "cgroup.subtree_control"), f"+{controller}")
        os.makedirs(parent, exist_ok=True)
        if self.v2:
            _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")
        return parent

    def create(self, limits: dict) -> Cgroup:
        """A fresh cgroup with this execution's limits."""
        self._count += 1
        name = f"x{self._count}-{os.urandom(4).hex()}"
        dirs = sorted({os.path.join(parent, name) for parent in self.parents.values()})
        cgroup = Cgroup(dirs, self.v2)
        try:
            for directory in dirs:
                os.mkdir(directory)
            if "pids" in self.parents:
                _write(os.path.join(self.parents["pids"], name, "pids.max"), limits["max_processes"])
            if "memory" in self.parents:
                memory, limit = os.path.join(self.parents["memory"], name), limits["memory_mb"] * MB
                _write(os.path.join(memory, "memory.max" if self.v2 else "memory.limit_in_bytes"), limit)
                try:  # no swapping around the limit, where swap accounting exists
                    swap = "memory.swap.max" if self.v2 else "memory.memsw.limit_in_bytes"
                    _write(os.path.join(memory, swap), 0 if self.v2 else limit)
                except OSError:
                    pass
        except BaseException:
            cgroup.remove()
            raise
        return cgroup

    def close(self) -> None:
        """Kill what is left in the parents and remove them (the launcher, at the end)."""
        for parent in set(self.parents.values()):
            _remove_cgroup_tree(parent, self.v2)


class RunCgroup:
    """The zygote's own cgroup (one per controller in v1), reused by every execution: children
    are born in it, so none has to be moved (a migration costs a millisecond in v1). The zygote
    counts towards pids.max (so does the keeper thread: both are added), is never chosen by the
    out-of-memory killer, and tells an OOM kill from the kill counter's growth."""

    def __init__(self, parents: dict[str, str], v2: bool) -> None:
        self.v2 = v2
        self.dirs = {controller: os.path.join(parent, "zygote") for controller, parent in parents.items()}
        self.limits: dict[str, int] = {}
        for directory in sorted(set(self.dirs.values())):
            os.makedirs(directory, exist_ok=True)
            _write(os.path.join(directory, "cgroup.procs"), os.getpid())
        self.oom_fd = -1  # read after every execution: kept open (os.pread, one system call)
        if "memory" in self.dirs:
            name = "memory.events" if v2 else "memory.oom_control"
            self.oom_fd = os.open(os.path.join(self.dirs["memory"], name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _write("/proc/self/oom_score_adj", -1000)
        except OSError:
            pass

    def set_limits(self, limits: dict) -> None:
        """Write the limits that differ from the previous execution's."""
        if "pids" in self.dirs and self.limits.get("pids") != limits["max_processes"]:
            _write(os.path.join(self.dirs["pids"], "pids.max"), limits["max_processes"] + 2)
            self.limits["pids"] = limits["max_processes"]
        memory = limits["memory_mb"] * MB
        if "memory" in self.dirs and self.limits.get("memory") != memory:
            directory, previous = self.dirs["memory"], self.limits.get("memory")
            limit_file = os.path.join(directory, "memory.max" if self.v2 else "memory.limit_in_bytes")
            swap_file = os.path.join(directory, "memory.swap.max" if self.v2 else "memory.memsw.limit_in_bytes")
            swap = 0 if self.v2 else memory
            # v1 wants memory <= memory+swap at every step: lower the first first, raise it last.
            order = [(limit_file, memory), (swap_file, swap)]
            if not self.v2 and previous is not None and memory > previous:
                order.reverse()
            for path, value in order:
                try:
                    _write(path, value)
                except OSError:
                    if path == limit_file:
                        raise  # swap accounting may not exist; the memory limit must
            self.limits["memory"] = memory

    def oom_kills(self) -> int:
        if self.oom_fd < 0:
            return 0
        try:
            for line in os.pread(self.oom_fd, 4096, 0).decode().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_others(self) -> None:
        """SIGKILL every member but the zygote until none is left."""
        _kill_members(next(iter(self.dirs.values())), spare=str(os.getpid()))

    def leave(self) -> None:
        """Move the zygote back to the launcher's cgroup (so that the folders can be removed)."""
        if self.oom_fd >= 0:
            os.close(self.oom_fd)
            self.oom_fd = -1
        for directory in sorted(set(self.dirs.values())):
            try:
                _write(os.path.join(os.path.dirname(os.path.dirname(directory)), "cgroup.procs"), os.getpid())
            except OSError:
                pass


def _remove_cgroup_tree(parent: str, v2: bool) -> None:
    try:
        children = [entry.path for entry in os.scandir(parent) if entry.is_dir()]
    except OSError:
        return
    for child in children:
        stale = Cgroup([child], v2)
        stale.kill()
        stale.remove()
    _rmdir_quietly(parent)


# --- the launcher: ctypes, namespaces, mounts, seccomp; then exec the zygote ---------------------

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = 0x10000000, 0x20000000, 0x40000000, 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36
NAMESPACES = (
    ("mount_namespace", CLONE_NEWNS),
    ("net_namespace", CLONE_NEWNET),
    ("ipc_namespace", CLONE_NEWIPC),
    ("uts_namespace", CLONE_NEWUTS),
)


def _libc():  # noqa: ANN202 - a ctypes.CDLL; ctypes is imported here only, never by the zygote
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"


# Resolved at import, before any mount can hide the link (see _exec_zygote).
INTERPRETER = os.path.realpath(sys.executable)


def launch(scratch_mb: int) -> int:
    """Apply what needs privileges or ctypes, then exec the zygote (in a child, as root)."""
    protections: dict[str, bool | str] = {name: "not attempted" for name in PROTECTIONS}
    root = os.geteuid() == 0
    script = os.path.abspath(__file__)
    script_fd = os.open(script, os.O_RDONLY)  # the new /tmp may hide a copy that lives there
    cgroups, missing = Cgroups.make(os.getpid())
    for controller in ("pids", "memory"):
        protections[f"{controller}_cgroup"] = missing.get(controller, True)
    config = {
        "cgroups": cgroups.parents,
        "v2": cgroups.v2,
        "owner": f"sandbox-{OWNER}{os.getpid()}-",
        "drop_uid": root,
        "private_tmp": False,
        "kill_all": False,
        "scratch_root": "/tmp",
    }
    protections["unprivileged_uid"] = True if root else f"not root: programs run as the server's uid {os.geteuid()}"
    try:
        libc = _libc()
    except OSError as exc:  # no ctypes: nothing below can be applied
        libc = None
        for name in protections:
            if protections[name] == "not attempted":
                protections[name] = f"no libc through ctypes ({_why(exc)})"
    pid_namespace = False
    if libc is not None and root:
        try:
            _check(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
            pid_namespace = True
        except OSError as exc:
            protections["pid_namespace"] = _why(exc)
    if not pid_namespace:  # no launcher to wait outside: the zygote replaces this process
        config["close_cgroups"] = True
        _prepare(libc, config, protections, scratch_mb, namespaces=False)
        _exec_zygote(config, protections, script, script_fd)
    child = os.fork()
    if child == 0:
        try:
            _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
            protections["pid_namespace"] = True
            _prepare(libc, config, protections, scratch_mb, namespaces=True)
            _exec_zygote(config, protections, script, script_fd)
        except BaseException as exc:  # noqa: BLE001 - report and leave; never return into the launcher
            os.write(2, f"forkserver: cannot start the zygote: {_why(exc)}\n".encode())
        os._exit(70)
    return _wait_as_launcher(child, cgroups)


def _wait_as_launcher(child: int, cgroups: Cgroups) -> int:
    """Wait for the zygote (its PID namespace ends with it), then remove the cgroup parents."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the zygote alone speaks on stdin/stdout: EOF must reach it, and us not hold it
    os.dup2(devnull, 1)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness closes us; a Ctrl-C is its to handle
    code = 1
    while True:
        try:
            _, status = os.waitpid(child, 0)
            code = os.waitstatus_to_exitcode(status)
            break
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    cgroups.close()
    return code if code >= 0 else 128 - code


def _prepare(libc, config: dict, protections: dict, scratch_mb: int, namespaces: bool) -> None:  # noqa: ANN001
    """Namespaces, mounts, no_new_privs and seccomp for this process and all it will fork."""
    if not namespaces:
        _describe_container(config, protections)
    if libc is None:
        return
    if namespaces:
        for name, flag in NAMESPACES:
            try:
                _check(libc.unshare(flag), f"unshare({name})")
                protections[name] = True
            except OSError as exc:
                protections[name] = _why(exc)
        config["kill_all"] = True  # PID 1 of its namespace: kill(-1) reaches every program process
        if protections["mount_namespace"] is True:
            _set_up_mounts(libc, config, protections, scratch_mb)
        if protections["uts_namespace"] is True:
            libc.sethostname(b"sandbox", 7)
    try:
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        protections["no_new_privs"] = True
    except OSError as exc:
        protections["no_new_privs"] = _why(exc)
    try:
        _install_seccomp()
        protections["seccomp"] = True
    except OSError as exc:
        protections["seccomp"] = _why(exc)
    if not config["kill_all"] and os.getpid() != 1:
        # Orphans of programs are reparented to the zygote, which can then find and kill them.
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _describe_container(config: dict, protections: dict) -> None:
    """Without namespaces of our own: report what the surroundings (a container) give."""
    reason = "not root" if os.geteuid() else "without a PID namespace of our own"
    if os.getpid() == 1:  # PID 1 of the container's PID namespace: kill(-1) reaches all
        config["kill_all"] = True
        protections["pid_namespace"] = True
    elif protections["pid_namespace"] == "not attempted":
        protections["pid_namespace"] = f"{reason}, and not PID 1 of a container"
    try:
        interfaces = [name for name in os.listdir("/sys/class/net") if name != "lo"]
        protections["net_namespace"] = True if not interfaces else f"network interfaces {interfaces} are up"
    except OSError as exc:
        protections["net_namespace"] = _why(exc)
    for name in ("mount_namespace", "ipc_namespace", "uts_namespace"):
        if protections[name] == "not attempted":
            protections[name] = f"{reason}: not unshared (whatever a container gives)"
    readonly = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
    protections["readonly_root"] = True if readonly else f"{reason}: the root filesystem is writable"
    tmp_fs = {mount: fstype for mount, fstype, _ in _mounts()}.get("/tmp")
    protections["private_tmpfs"] = True if tmp_fs == "tmpfs" else f"{reason}: /tmp is not a tmpfs of its own"
    if os.getpid() == 1:
        # PID 1 of a container: its /tmp tmpfs serves only us (wiped after each program), and
        # RLIMIT_NPROC would count the processes of every container that shares our uid: the
        # container's own pids limit caps the programs instead.
        config["private_tmp"] = tmp_fs == "tmpfs"
        config["nproc"] = False


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, per-mount options) for every mount, from mountinfo."""
    found = []
    try:
        lines = _read("/proc/self/mountinfo").splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        separator = fields.index("-")
        point = fields[4].encode().decode("unicode_escape")  # \040 and friends
        found.append((point, fields[separator + 1], fields[5]))
    return found


def _set_up_mounts(libc, config: dict, protections: dict, scratch_mb: int) -> None:  # noqa: ANN001
    """Everything read-only but a fresh tmpfs on /tmp and the cgroup parents; a fresh /proc."""

    def mount(source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None = None) -> None:
        _check(libc.mount(source, target.encode(), fstype, flags, data), f"mount {target}")

    mount(None, "/", None, MS_REC | MS_PRIVATE)
    writable = set(config["cgroups"].values())
    for directory in writable:  # the zygote makes per-execution cgroups here
        mount(directory.encode(), directory, None, MS_BIND)
    for path in _dangerous_files():
        try:
            mount(b"/dev/null", path, None, MS_BIND)
        except OSError:
            pass
    try:
        mount(b"proc", "/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        os.write(2, f"forkserver: no fresh /proc ({_why(exc)})\n".encode())
    if config["drop_uid"]:
        _expose_interpreter(mount)
    if os.path.isdir("/run"):  # Unix sockets (D-Bus, docker) accept connections on read-only mounts
        try:
            mount(b"tmpfs", "/run", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=0755")
        except OSError as exc:
            os.write(2, f"forkserver: /run stays visible ({_why(exc)})\n".encode())
    failures = []
    for point, _, options in sorted(set(_mounts()), key=lambda mount: len(mount[0])):
        if point in writable:
            continue
        keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | sum(keep[opt] for opt in options.split(",") if opt in keep)
        try:
            mount(None, point, None, flags)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: under a mount that hides it, out of reach
                failures.append(f"{point} ({exc.strerror})")
    protections["readonly_root"] = True if not failures else "not read-only: " + ", ".join(failures[:5])
    try:
        mount(b"tmpfs", "/tmp", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={scratch_mb}m,mode=1777".encode())
        protections["private_tmpfs"] = True
        config["private_tmp"] = True
    except OSError as exc:
        protections["private_tmpfs"] = _why(exc)


def _expose_interpreter(mount) -> None:  # noqa: ANN001
    """Let the unprivileged uid read the interpreter and its standard library where they live
    under a directory it cannot enter (pyenv in /root): cover that directory with an empty
    tmpfs and bind only the interpreter's own directories back (the rest stays hidden)."""
    wanted = {os.path.dirname(os.path.realpath(sys.executable)), sys.prefix, sys.base_prefix, sys.exec_prefix}
    wanted.update(path for path in sys.path if path)
    wanted = {os.path.realpath(path) for path in wanted if os.path.isdir(path)}
    closed: dict[str, list[str]] = {}
    for path in sorted(wanted):
        ancestor = "/"
        for part in path.strip("/").split("/")[:-1]:
            ancestor = os.path.join(ancestor, part)
            if not os.stat(ancestor).st_mode & 0o001:  # others cannot search it
                closed.setdefault(ancestor, []).append(path)
                break
    for ancestor, paths in closed.items():
        tops = [path for path in paths if not any(path.startswith(other + "/") for other in paths)]
        fds = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in tops}
        try:
            mount(b"tmpfs", ancestor, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=0755")
            for path, fd in fds.items():
                os.makedirs(path, 0o755, exist_ok=True)
                mount(f"/proc/self/fd/{fd}".encode(), path, None, MS_BIND | MS_REC)
        except OSError as exc:
            os.write(2, f"forkserver: cannot expose {tops} under {ancestor} ({_why(exc)})\n".encode())
        finally:
            for fd in fds.values():
                os.close(fd)


def _dangerous_files() -> list[str]:
    found = []
    for directory in sys.path:
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        for name in names:
            module = name.partition(".")[0]
            if module in DANGEROUS_MODULES and name.endswith(".so"):
                found.append(os.path.join(directory, name))
    return found


def _install_seccomp() -> None:
    """Refuse, with EPERM, what no program needs and attacks use. Raises OSError if impossible."""
    import ctypes

    try:
        seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise OSError(errno.ENOENT, f"libseccomp.so.2 not found ({exc})") from None

    class Arg(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(Arg),
    ]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    seccomp.seccomp_release.argtypes = [ctypes.c_void_p]
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    ne, masked_eq = 1, 7
    context = seccomp.seccomp_init(allow)
    if not context:
        raise OSError(errno.EINVAL, "seccomp_init failed")

    def rule(action: int, name: str, *args: tuple[int, int, int, int]) -> None:
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # unknown to this libseccomp or architecture
            return
        array = (Arg * max(1, len(args)))(*[Arg(*arg) for arg in args])
        result = seccomp.seccomp_rule_add_array(context, action, number, len(args), array)
        if result < 0:
            raise OSError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

    try:
        for name in (
            "ptrace process_vm_readv process_vm_writev mount umount2 unshare setns pivot_root chroot bpf "
            "keyctl add_key request_key io_uring_setup io_uring_enter io_uring_register perf_event_open "
            "kexec_load kexec_file_load reboot init_module finit_module delete_module swapon swapoff "
            "userfaultfd open_by_handle_at name_to_handle_at fsopen fsmount fsconfig fspick move_mount "
            "open_tree mount_setattr acct quotactl syslog vhangup lookup_dcookie iopl ioperm memfd_create "
            "shmget shmat shmdt shmctl semget semop semtimedop semctl msgget msgsnd msgrcv msgctl "
            "mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr"
        ).split():
            rule(eperm, name)
        rule(eperm, "socket", (0, ne, 1, 0))  # every family but AF_UNIX
        rule(eperm, "socketpair", (0, ne, 1, 0))
        for flag in (
            CLONE_NEWNS,
            CLONE_NEWUTS,
            CLONE_NEWIPC,
            CLONE_NEWUSER,
            CLONE_NEWPID,
            CLONE_NEWNET,
            CLONE_NEWCGROUP,
        ):
            rule(eperm, "clone", (0, masked_eq, flag, flag))
        rule(eperm, "clone", (0, masked_eq, CLONE_NEWCGROUP, CLONE_NEWCGROUP))
        rule(enosys, "clone3")  # its flags are out of a filter's reach; libc falls back to clone
        result = seccomp.seccomp_load(context)
        if result < 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")
    finally:
        seccomp.seccomp_release(context)


def _exec_zygote(config: dict, protections: dict, script: str, script_fd: int) -> None:
    """Replace this process by a fresh interpreter running the zygote (no ctypes in it)."""
    try:
        visible = os.path.samestat(os.stat(script), os.fstat(script_fd))
    except OSError:
        visible = False
    if not visible:  # run it from the descriptor opened before the mounts
        os.set_inheritable(script_fd, True)
        script, config["script_fd"] = f"/proc/self/fd/{script_fd}", script_fd
    # The interpreter by its real path: a venv's bin/python may live under the /tmp that the new
    # tmpfs hides (a clone in /tmp), while the interpreter it links to stays reachable.
    interpreter = INTERPRETER
    argv = [interpreter, "-I", "-S", "-B", script, "--zygote"]
    argv.append(json.dumps({**config, "protections": protections}))
    os.execve(interpreter, argv, {})


# --- the zygote ---------------------------------------------------------------------------------


class Zygote:
    """Reads requests, forks one child per program, enforces limits from outside, answers."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.protections = dict(config["protections"])
        self.protections["rlimits"] = True
        self.protections["empty_env"] = True
        self.cgroup = RunCgroup(config["cgroups"], config["v2"]) if config["cgroups"] else None
        if config["private_tmp"]:  # the writable area is the same for every execution
            config["hook"] = _audit_hook(config["scratch_root"])
        self.kill_all = config["kill_all"]
        self.urandom = os.open("/dev/urandom", os.O_RDONLY | os.O_CLOEXEC)
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.prepared: dict[tuple, Prepared] = {}  # by limits: a run has a few distinct ones
        self.buffer = b""
        self.eof = False
        self.runs = 0
        # The cgroup's OOM kill count read after the previous execution's clean-up: nothing but
        # the zygote (never chosen by the OOM killer) runs in the cgroup until the next fork.
        self.oom_kills_after: int | None = None

    def serve(self) -> int:
        if self.config.get("script_fd") is not None:
            os.close(self.config["script_fd"])
        for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)  # as PID 1: dropped from inside
        os.environ.clear()
        _preimport()
        # The same for every child, so set here once.
        sys.argv[:] = [""]
        sys.pycache_prefix = "/nonexistent"  # imports compile from source: marshal is refused
        os.umask(0o077)
        _send({"ready": True, "protections": self.protections})
        try:
            while True:
                line = self._read_line()
                if line is None:
                    break
                _send(self._handle(line))
                if self.eof:
                    break
        except BrokenPipeError:  # the harness is gone
            pass
        finally:
            self._cleanup_scratch_root()
            if self.config.get("close_cgroups") and self.cgroup is not None:  # no launcher to do it
                self.cgroup.leave()
                Cgroups(self.config["cgroups"], self.config["v2"]).close()
        return 0

    def _read_line(self) -> bytes | None:
        """The next request line; None at EOF."""
        while b"\n" not in self.buffer:
            if self.eof or not self._fill():
                line, self.buffer = self.buffer, b""
                return line if line.strip() else None
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def _fill(self) -> bool:
        """Read what stdin has; False at EOF."""
        try:
            chunk = os.read(0, 1 << 16)
        except InterruptedError:
            return True
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _handle(self, line: bytes) -> dict:
        request_id = None
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise TypeError("not an object")
            request_id, source = request.get("id"), request["source"]
            if not isinstance(source, str):
                raise TypeError("source is not a string")
            limits = _valid_limits(request.get("limits") or {})
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            return {"id": request_id, "status": SANDBOX_ERROR, "detail": f"bad request: {exc}", "duration_s": 0.0}
        try:
            status, detail, duration = self._execute(source, limits)
        except Exception as exc:  # noqa: BLE001 - the sandbox's own fault: say so, keep serving
            status, detail, duration = SANDBOX_ERROR, _why(exc), 0.0
        return {"id": request_id, "status": status, "detail": detail, "duration_s": round(duration, 6)}

    def _execute(self, source: str, limits: dict) -> tuple[str, str, float]:
        """Run one program in a fresh child; (status, detail, duration). Raises if no program ran."""
        self.runs += 1
        cgroup, opened, scratch, pid, records = self.cgroup, [], "", 0, None
        try:
            scratch = self._make_scratch()
            oom_kills, self.oom_kills_after = self.oom_kills_after, None
            if cgroup is not None:
                cgroup.set_limits(limits)
                if oom_kills is None:
                    oom_kills = cgroup.oom_kills()
            record_r, record_w = os.pipe2(os.O_CLOEXEC)
            opened += [record_r, record_w]
            key_r, key_w = os.pipe2(os.O_CLOEXEC)
            opened += [key_r, key_w]
            key = bytearray(32)  # filled in place: no copy of it is left in freed memory
            prepared = self._prepare(limits)
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                _child(source, scratch, record_w, key_r, prepared)
            for fd in (record_w, key_r):
                opened.remove(fd)
                os.close(fd)
            try:
                os.readv(self.urandom, [key])
                digest = hashlib.sha256(key).digest()
                os.write(key_w, key)  # 32 bytes: a pipe takes them at once
            except BrokenPipeError:  # the child is already gone
                digest = b""
            finally:
                key[:] = bytes(len(key))  # from here on the zygote holds only the digest
            records = _Records(digest)
            ended = self._wait(pid, record_r, records, start + limits["timeout_s"])
            duration = time.monotonic() - start
        finally:
            if pid:  # whatever happened: nothing of this execution survives it
                self._kill(pid, cgroup)
                returncode, cpu_s = _reap_child(pid)
                self._reap_others()
                if records is not None:
                    records.drain(record_r)
            for fd in opened:
                os.close(fd)
            if scratch:
                self._remove_scratch(scratch)
        oom = False
        if cgroup is not None:
            self.oom_kills_after = cgroup.oom_kills()
            oom = self.oom_kills_after > oom_kills
        if ended == "interrupted":
            return SANDBOX_ERROR, "interrupted: the server's input ended", duration
        return (*_judge(records, ended == "timeout", returncode, cpu_s, oom, limits), duration)

    def _prepare(self, limits: dict) -> Prepared:
        key = tuple(sorted(limits.items()))
        if key not in self.prepared:
            config = self.config
            nproc = "pids" not in config["cgroups"] and config.get("nproc", True)
            rlimits, address_space = _rlimits(limits, nproc)
            hook = config["hook"] if config["private_tmp"] else None
            self.prepared[key] = Prepared(rlimits, address_space, self.devnull, config["drop_uid"], hook)
        return self.prepared[key]

    def _wait(self, pid: int, record_r: int, records: _Records, deadline: float) -> str:
        """Wait for the child to exit, reading records: "exited", "timeout", or "interrupted" (EOF)."""
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        poller = select.poll()
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        poller.register(record_r, select.POLLIN)
        if not self.eof:
            poller.register(0, select.POLLIN)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                wait_ms = min(remaining, 0.05 if pidfd < 0 else remaining)
                for fd, _ in poller.poll(max(1, int(wait_ms * 1000) + 1)):
                    if fd == record_r:
                        if records.read(record_r) is False:
                            poller.unregister(record_r)
                    elif fd == 0:
                        if not self._fill():  # the harness is gone: stop now
                            return "interrupted"
                    elif fd == pidfd:
                        return "exited"
                if pidfd < 0 and _exited(pid):
                    return "exited"
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def _kill(self, pid: int, cgroup: RunCgroup | None) -> None:
        """SIGKILL every process of this execution."""
        if self.kill_all:  # PID 1 of the namespace: every other process in it is the program's
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        if cgroup is not None:
            cgroup.kill_others()
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for _ in range(100):  # descendants that left the session (we are their subreaper)
            found = _descendants(os.getpid())
            if not found:
                break
            for child in found:
                try:
                    os.kill(child, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def _reap_others(self) -> None:
        """Reap every remaining child (orphans of the program were reparented to us)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, 0 if self.kill_all else os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return

    def _make_scratch(self) -> str:
        root = self.config["scratch_root"]
        if not self.config["private_tmp"]:
            import tempfile

            root = tempfile.gettempdir()
        path = os.path.join(root, f"{self.config['owner']}{os.getpid()}-{self.runs}")
        os.mkdir(path, 0o700)
        if self.config["drop_uid"]:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
        return path

    def _remove_scratch(self, path: str) -> None:
        try:
            os.rmdir(path)  # most programs leave their scratch empty
        except OSError:
            _remove_tree(path)
        if self.config["private_tmp"]:  # the tmpfs is ours alone: nothing a program left stays
            self._cleanup_scratch_root()

    def _cleanup_scratch_root(self) -> None:
        if not self.config["private_tmp"]:
            return
        root = self.config["scratch_root"]
        try:
            entries = list(os.scandir(root))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass


class _Records:
    """The child's record pipe, parsed as it arrives: S (started), P <key> (passed), F <json>."""

    def __init__(self, digest: bytes) -> None:
        self.digest = digest
        self.partial = b""
        self.skipping = False  # inside a line longer than RECORD_LINE_CAP
        self.started = False
        self.passed = False
        self.failure: tuple[str, str] | None = None

    def read(self, fd: int) -> bool | None:
        """Read what is there: True (read some), False (EOF), None (nothing yet)."""
        try:
            chunk = os.read(fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return None
        if not chunk:
            return False
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if self.skipping:
                self.skipping = False
                continue
            self._line(line)
        if len(self.partial) > RECORD_LINE_CAP:
            self.partial, self.skipping = b"", True
        return True

    def drain(self, fd: int) -> None:
        """Read what the (dead) writers left in the pipe."""
        os.set_blocking(fd, False)
        while self.read(fd):
            pass

    def _line(self, line: bytes) -> None:
        if line == b"S":
            self.started = True
        elif line.startswith(b"P ") and self.started:
            try:
                key = bytes.fromhex(line[2:].decode("ascii"))
            except ValueError:
                return
            if hashlib.sha256(key).digest() == self.digest:
                self.passed = True
        elif line.startswith(b"F ") and self.started and self.failure is None:
            try:
                fields = json.loads(line[2:])
            except (ValueError, RecursionError):
                return
            if isinstance(fields, dict) and fields.get("status") in REPORTED and isinstance(fields.get("detail"), str):
                self.failure = (fields["status"], fields["detail"][:DETAIL_CHARS])


def _valid_limits(given: dict) -> dict:
    """The request's limits over the defaults, checked: a bad one is the caller's error."""
    if not isinstance(given, dict):
        raise TypeError("limits is not an object")
    limits = {**DEFAULT_LIMITS, **{key: value for key, value in given.items() if key in DEFAULT_LIMITS}}
    for key, value in limits.items():
        if value is None and key == "cpu_time_s":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
            raise ValueError(f"bad limit {key}: {value!r}")
        if key in ("memory_mb", "max_processes", "max_file_mb"):
            limits[key] = max(1, int(value))
    return limits


def _judge(
    records: _Records, timed_out: bool, returncode: int, cpu_s: float | None, oom: bool, limits: dict
) -> tuple[str, str]:
    """The verdict. Only an authenticated pass record passes; limits measured from outside come next."""
    if records.passed:
        return PASSED, ""
    if timed_out:
        return TIMEOUT, f"wall clock limit of {limits['timeout_s']:g}s"
    if not records.started:
        return SANDBOX_ERROR, f"the child ended ({_describe_end(returncode)}) before the program started"
    if records.failure is not None:
        return records.failure
    if oom:
        return MEMORY, f"killed by the out-of-memory killer ({limits['memory_mb']} MB)"
    if returncode >= 0:
        return CRASHED, f"exited with code {returncode} without reporting"
    number, cpu_limit = -returncode, _cpu_limit(limits)
    if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu_s is not None and cpu_s >= cpu_limit):
        return TIMEOUT, f"CPU time limit of {cpu_limit}s"
    return CRASHED, _describe_end(returncode)


def _describe_end(returncode: int) -> str:
    if returncode >= 0:
        return f"code {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _cpu_limit(limits: dict) -> int:
    """Whole CPU seconds: from cpu_time_s (calibrated per problem) or else the wall clock limit."""
    seconds = limits.get("cpu_time_s") or limits["timeout_s"]
    return max(1, math.ceil(seconds))


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (no pidfd: Linux < 5.3)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _reap_child(pid: int) -> tuple[int, float | None]:
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime
        except InterruptedError:
            continue
        except ChildProcessError:
            return -signal.SIGKILL, None


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            stat = _read(f"/proc/{name}/stat")
        except OSError:
            continue
        parents[int(name)] = int(stat.rpartition(")")[2].split()[1])
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def _remove_tree(path: str) -> None:
    """Remove a directory tree, even where the program took its own permissions away."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        try:
            os.chmod(path, 0o700)
            for root, dirs, _ in os.walk(path):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)


def _send(message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        written = os.write(1, data)
        data = data[written:]


def _preimport() -> None:
    import gc

    for name in PREIMPORTS:
        try:
            __import__(name)
        except ImportError:
            pass
    gc.collect()
    gc.freeze()  # children do not touch (and so copy) the zygote's objects when collecting


# --- the child: set up, then run the program ------------------------------------------------------


# Everything below runs once per execution in a fresh fork: each page it writes is a copy of a
# zygote page, so what can be prepared once (rlimits, /dev/null, the audit hook) is prepared by the zygote.


def _child(source: str, scratch: str, record_w: int, key_r: int, prepared: Prepared):  # noqa: ANN202
    """In the forked child: confine this process, then run the program. Never returns."""
    try:
        os.setsid()  # born in the zygote's cgroup: no need to join one
        record_fd, key_fd = _arrange_descriptors(record_w, key_r, prepared.devnull)
        os.chdir(scratch)
        for which, soft, hard in prepared.rlimits:
            resource.setrlimit(which, (soft, hard))
        if prepared.drop_uid:
            os.setgroups([])
            os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
            os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        _run(source, record_fd, key_fd, prepared.address_space, prepared.hook or _audit_hook(scratch))
    except BaseException:  # noqa: BLE001 - a failed set-up is reported by the missing "S" line
        pass
    os._exit(71)


def _arrange_descriptors(record_w: int, key_r: int, devnull: int) -> tuple[int, int]:
    """stdio to /dev/null, the two pipes on 3 and 4 (close-on-exec), nothing else open."""
    record_w = fcntl.fcntl(record_w, fcntl.F_DUPFD_CLOEXEC, 10)
    key_r = fcntl.fcntl(key_r, fcntl.F_DUPFD_CLOEXEC, 10)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.dup2(record_w, 3, inheritable=False)
    os.dup2(key_r, 4, inheritable=False)
    os.closerange(5, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    return 3, 4


class Prepared(NamedTuple):
    """What a child needs besides its program, made by the zygote."""

    rlimits: tuple[tuple[int, int, int], ...]  # (resource, soft, hard), all but the address space
    address_space: tuple[int, int]  # set last: the keeper thread's stack must fit first
    devnull: int
    drop_uid: bool
    hook: Any  # the audit hook; None: made in the child for its own scratch folder


def _rlimits(limits: dict, nproc: bool) -> tuple[tuple[tuple[int, int, int], ...], tuple[int, int]]:
    """Per-process limits, never above what the zygote has: (the others, the address space)."""
    cpu, file_size, memory = _cpu_limit(limits), limits["max_file_mb"] * MB, limits["memory_mb"] * MB
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU first, SIGKILL a second later
        (resource.RLIMIT_FSIZE, file_size, file_size),
        (resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if nproc:
        wanted.append((resource.RLIMIT_NPROC, limits["max_processes"], limits["max_processes"]))
    wanted.append((resource.RLIMIT_AS, memory, memory))
    capped = []
    for which, soft, hard in wanted:
        _, current = resource.getrlimit(which)
        if current != resource.RLIM_INFINITY:
            hard = min(hard, current)
            soft = min(soft, hard)
        capped.append((which, int(soft), int(hard)))
    return tuple(capped[:-1]), capped[-1][1:]


def _execute(code, namespace, handover, done, park):  # noqa: ANN001, ANN202 - the line numbers below matter
    handover(sys._getframe())
    exec(code, namespace)
    while True:  # only reached when the whole program ran without raising
        try:
            done()
            park()
        except BaseException:  # noqa: BLE001, S110 - a late signal handler must not cost the verdict
            pass


EXEC_LINE = _execute.__code__.co_firstlineno + 2


def _keeper(key_fd, record_fd, box, go, ready, done, exec_line, read, write, close, exit_):  # noqa: ANN001, ANN202
    """The keeper thread: holds the key where the program cannot reach, and writes the pass
    record only once the main thread's _execute frame has gone past its exec() line."""
    try:
        key = read(key_fd, 64)
        close(key_fd)
        record = b"P " + key.hex().encode() + b"\n"
        key = None
        go.acquire()
        frame = box.pop()
        ready.release()
        timeout = -1
        while True:
            done.acquire(True, timeout)
            if frame.f_lineno > exec_line:
                write(record_fd, record)
                exit_(0)
            timeout = 0.05  # woken by someone else: keep looking
    except BaseException:  # noqa: BLE001
        exit_(72)


def _run(source: str, record_fd: int, key_fd: int, address_space: tuple[int, int], hook):  # noqa: ANN001, ANN202
    """Run the program in this (main) thread, the keeper beside it; report; exit. (random was
    seeded afresh by its own fork hook.)"""
    write, exit_ = os.write, os._exit
    module = type(sys)("__main__")  # a real __main__, so pickle and dataclasses find it
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module

    box: list = []
    go, ready, done, park = (_thread.allocate_lock() for _ in range(4))
    for lock in (go, ready, done, park):
        lock.acquire()

    def handover(frame) -> None:  # noqa: ANN001
        box.append(frame)
        go.release()
        ready.acquire()

    _thread.stack_size(256 * 1024)
    _thread.start_new_thread(
        _keeper, (key_fd, record_fd, box, go, ready, done, EXEC_LINE, os.read, write, os.close, exit_)
    )
    _thread.stack_size(0)
    resource.setrlimit(resource.RLIMIT_AS, address_space)
    # What the failure records need, bound before the program can rebind builtins or json.
    quote, assertion_error, memory_error, base_exception = _QUOTE, AssertionError, MemoryError, BaseException
    memory_record = MEMORY_RECORD
    sys.addaudithook(hook)
    write(record_fd, b"S\n")
    try:
        code = compile(source, "<program>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: source with null bytes
        write(record_fd, _failure(SYNTAX_ERROR, _describe(exc), quote))
        exit_(0)
    del source
    try:
        _execute(code, module.__dict__, handover, done.release, park.acquire)
    except memory_error:  # the program may still hold the memory: use the prepared record
        write(record_fd, memory_record)
    except assertion_error as exc:
        write(record_fd, _failure(FAILED, _describe(exc), quote))
    except base_exception as exc:  # SystemExit, KeyboardInterrupt, RecursionError included
        write(record_fd, _failure(ERROR, _describe(exc), quote))
    exit_(0)


def _failure(status: str, detail: str, quote) -> bytes:  # noqa: ANN001
    return ('F {"status": "%s", "detail": %s}\n' % (status, quote(detail))).encode()


MEMORY_RECORD = _failure(MEMORY, "MemoryError", _QUOTE)  # ready-made: a MemoryError leaves no room to make it


def _describe(exc: BaseException) -> str:
    """'TypeName: first line of the message', at most DETAIL_CHARS characters."""
    try:
        name = type(exc).__name__
        if isinstance(exc, SyntaxError):
            message = f"{exc.msg} (line {exc.lineno})"
        elif isinstance(exc, SystemExit):
            message = str(exc.code)
        else:
            message = str(exc)
        message = message[: DETAIL_CHARS * 4].strip().partition("\n")[0]
        detail = f"{name}: {message}" if message else name
        return str(detail[:DETAIL_CHARS])
    except BaseException:  # noqa: BLE001 - a __str__ that raises must not cost the verdict
        return "unprintable exception"


def _audit_hook(writable: str):  # noqa: ANN202 - the hook
    """The audit hook that keeps the verdict channel out of the program's reach (made once, by
    the zygote; installed by each child before the program runs).

    The hook and its helpers use only what is bound here: the program can rebind builtins and
    module attributes (os.lstat, posixpath, builtins.type), not these.
    """
    blocked_events = frozenset(
        {
            "sys.settrace",
            "sys.setprofile",
            "sys._current_frames",
            "sys._current_exceptions",
            "sys.addaudithook",
            "gc.get_objects",
            "gc.get_referrers",
            "gc.get_referents",
            "code.__new__",
            "marshal.loads",
            "marshal.load",
            "sys.monitoring.register_callback",
            "sys.monitoring.set_events",
            "sys.monitoring.set_local_events",
        }
    )
    blocked_modules, proc_allowed = frozenset(DANGEROUS_MODULES), PROC_ALLOWED
    lstat, stat_, readlink, getcwd, fsdecode = os.lstat, os.stat, os.readlink, os.getcwd, os.fsdecode
    is_link, is_dir = stat.S_ISLNK, stat.S_ISDIR
    type_, str_, bytes_, len_, error = type, str, bytes, len, PermissionError
    writable = os.path.realpath(writable).rstrip("/") + "/"

    def resolve(path: object, base: str) -> str | None:
        """The canonical absolute path (symlinks resolved as far as they exist), or None."""
        if type_(path) is bytes_:
            path = fsdecode(path)
        if type_(path) is not str_:
            return None
        parts = (path if path.startswith("/") else base + "/" + path).split("/")
        done: list = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = "/" + "/".join(done + [part])
            try:
                link = is_link(lstat(candidate).st_mode)
            except OSError:
                link = False
            if link and hops < 40:
                hops += 1
                target = readlink(candidate)
                if target.startswith("/"):
                    done = []
                parts = target.split("/") + parts
            else:
                done.append(part)
        return "/" + "/".join(done)

    def inside(real: str) -> bool:
        return (real + "/").startswith(writable)

    def refuse(what: str) -> None:
        raise error(1, what + " is not allowed in the sandbox")

    def hook(event: str, args: tuple) -> None:
        if event in blocked_events or event.startswith("ctypes."):
            refuse(event)
        elif event == "import":
            name, path = args[0], args[1]
            if type_(name) is str_ and name.partition(".")[0] in blocked_modules:
                refuse("import " + name)
            if type_(path) is str_ and path.rpartition("/")[2].partition(".")[0] in blocked_modules:
                refuse("loading " + path)
        elif event == "open" or event == "os.chdir":
            real = resolve(args[0], getcwd())
            if real is None:
                return
            if real == "/proc" or (real.startswith("/proc/") and real not in proc_allowed):
                refuse(event + " " + real)
            if event == "open" and not inside(real):
                try:
                    directory = is_dir(stat_(real).st_mode)
                except OSError:
                    directory = False
                if directory:  # a directory descriptor would let relative paths escape these checks
                    refuse("opening the directory " + real)
        elif event == "os.symlink" and len_(args) > 1:
            link = resolve(args[1], getcwd())
            target = resolve(args[0], link.rpartition("/")[0] or "/") if link is not None else None
            if target is not None and not inside(target):
                refuse("a symlink to " + target)
        elif event == "object.__setattr__" and len_(args) > 1 and args[1] == "__code__":
            refuse("setting __code__")

    return hook


if __name__ == "__main__":
    sys.exit(main())
