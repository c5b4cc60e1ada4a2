"""Build the docker sandbox's image, offline when no registry is reachable.

`build_image()` (the CLI's `harness sandbox build-image`; also `python -m sandbox.image.build`):
1. The base image, first found of:
   - `base` if given, or harness-sandbox-base:bookworm, already in the engine;
   - a cached root filesystem tarball (~/.cache/harness/, from an earlier offline build), imported;
   - `docker pull debian:bookworm-slim`, tagged as the base (the Dockerfile then installs python3);
   - offline: `debootstrap --variant=minbase --include=python3,libseccomp2 bookworm DIR MIRROR` with
     the Debian mirror this machine's apt uses, slimmed (no apt caches, docs, man pages, locales),
     tarred into the cache and `docker import`ed. Needs root and debootstrap; about a minute.
2. `docker build` of sandbox/image/Dockerfile on that base, with sandbox/forkserver.py copied in
   and its sha256 as a label, so the docker sandbox refuses an image built from another version.
   A rebuild removes the image it replaces.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import UsageError

from .engine import (
    BASE_IMAGE,
    DEFAULT_IMAGE,
    FORKSERVER,
    IMAGE_LABEL,
    EngineError,
    docker,
    docker_cli,
    first_line,
    forkserver_digest,
    image_labels,
    require_engine,
)

DOCKERFILE = Path(__file__).with_name("Dockerfile")
SUITE = "bookworm"
PACKAGES = ("python3", "libseccomp2")
PULL_IMAGE = "debian:bookworm-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_LABEL = "harness.sandbox.base"
# Removed from the debootstrapped root: nothing in a sandbox reads them.
SLIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")
PULL_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 1200.0

Log = Callable[[str], None]


def build_image(tag: str = DEFAULT_IMAGE, base: str | None = None, log: Log = print) -> str:
    """Build the sandbox image `tag` (see the module docstring); return the tag."""
    require_engine()
    digest = forkserver_digest()
    base = _ensure_base(base, log)
    old = _image_id(tag)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="harness-image-") as context:
        shutil.copy(DOCKERFILE, Path(context) / "Dockerfile")
        shutil.copy(FORKSERVER, Path(context) / "forkserver.py")
        command = [docker_cli(), "build", "--rm", "--force-rm", "-t", tag]
        command += ["--build-arg", f"BASE={base}", "--build-arg", f"FORKSERVER_SHA256={digest}", context]
        done = subprocess.run(command, capture_output=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        logfile = _cache_dir() / "build-image.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        logfile.write_bytes(done.stdout + done.stderr)
        lines = [line for line in (done.stdout + done.stderr).decode(errors="replace").splitlines() if line.strip()]
        raise UsageError(
            f"docker sandbox: `docker build` of {tag} failed ({lines[-1] if lines else '?'}); log: {logfile}"
        )
    new = _image_id(tag)
    if old and new and old != new and IMAGE_LABEL in (image_labels(old) or {}):
        try:  # the image this one replaces; still in use by a running container, it stays
            docker("image", "rm", old)
        except EngineError:
            pass
    log(f"sandbox image {tag} built on {base} in {time.monotonic() - started:.1f} s")
    return tag


def _ensure_base(base: str | None, log: Log) -> str:
    """The base image's name, made available in the engine."""
    if base is not None:
        if _image_id(base) is None:
            log(f"pulling {base}")
            try:
                docker("pull", base, timeout=PULL_TIMEOUT_S)
            except EngineError as exc:
                raise UsageError(
                    f"docker sandbox: base image {base!r} is not local and cannot be pulled ({exc})"
                ) from None
        return base
    if _image_id(BASE_IMAGE) is not None:
        return BASE_IMAGE
    tarball = _tarball_path()
    if not tarball.is_file():
        try:
            docker("pull", PULL_IMAGE, timeout=PULL_TIMEOUT_S)
            docker("tag", PULL_IMAGE, BASE_IMAGE)
            log(f"base image {BASE_IMAGE}: pulled {PULL_IMAGE}")
            return BASE_IMAGE
        except EngineError as exc:
            log(f"no registry ({exc}); building the base image offline with debootstrap")
        _debootstrap_tarball(tarball, log)
    started = time.monotonic()
    try:
        docker(
            "import",
            "--change",
            f'LABEL {BASE_LABEL}="1"',
            "--change",
            'CMD ["python3"]',
            "--message",
            f"debootstrap {SUITE} minbase + {', '.join(PACKAGES)}",
            str(tarball),
            BASE_IMAGE,
            timeout=PULL_TIMEOUT_S,
        )
    except EngineError as exc:
        raise UsageError(f"docker sandbox: `docker import {tarball}` failed ({exc})") from None
    log(f"base image {BASE_IMAGE}: imported {tarball} in {time.monotonic() - started:.1f} s")
    return BASE_IMAGE


def _debootstrap_tarball(tarball: Path, log: Log) -> None:
    """Build a minimal Debian root with python3 and store it as `tarball`."""
    if shutil.which("debootstrap") is None:
        raise UsageError(
            "docker sandbox: no registry to pull a base image from, and no debootstrap to build one "
            "(Debian: apt-get install debootstrap)"
        )
    if os.geteuid() != 0:
        raise UsageError("docker sandbox: building the base image offline (debootstrap) needs root")
    mirror = debian_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    started = time.monotonic()
    try:
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            logfile = tarball.parent / "debootstrap.log"
            logfile.write_bytes(done.stdout + done.stderr)
            raise UsageError(
                f"docker sandbox: debootstrap of {SUITE} from {mirror} failed "
                f"({first_line(done.stderr) or first_line(done.stdout)}); log: {logfile}"
            )
        _slim(root)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    finally:
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
    log(f"debootstrap {SUITE} from {mirror}: {tarball} in {time.monotonic() - started:.1f} s")


def _slim(root: Path) -> None:
    for relative in SLIM:
        directory = root / relative
        if directory.is_dir():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for child in (root / "var/log").rglob("*"):
        if child.is_file() and not child.is_symlink():
            child.unlink()
    # debootstrap copies the host's; the engine mounts its own at run time. Unlinked first, so a
    # symbolic link in the new root can never redirect a write to the host.
    for name, text in (("etc/resolv.conf", ""), ("etc/hostname", "sandbox\n")):
        (root / name).unlink(missing_ok=True)
        (root / name).write_text(text)


def _unmount_under(root: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted inside `root` (proc, sys), deepest first."""
    prefix = str(root) + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (HARNESS_DEBIAN_MIRROR overrides), else deb.debian.org."""
    if os.environ.get("HARNESS_DEBIAN_MIRROR"):
        return os.environ["HARNESS_DEBIAN_MIRROR"]
    for uri, suites in _apt_sources(apt):
        if "/debian" in uri and "security" not in uri and any("-" not in suite for suite in suites):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _apt_sources(apt: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled deb entry in sources.list{,.d/*.list,.d/*.sources} under `apt`."""
    entries: list[tuple[str, list[str]]] = []
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = [w for w in line.split("#", 1)[0].split() if not (w.startswith("[") or w.endswith("]"))]
            if len(words) >= 3 and words[0] == "deb":
                entries.append((words[1], [words[2]]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ", "\t")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    return entries


def _image_id(image: str) -> str | None:
    try:
        return docker("image", "inspect", "--format", "{{.Id}}", image).strip() or None
    except EngineError:
        return None


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"


def _tarball_path() -> Path:
    key = hashlib.sha256(f"{SUITE} minbase {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    return _cache_dir() / f"sandbox-base-{SUITE}-{key}.tar"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.image.build", description=build_image.__doc__)
    parser.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image to build (default: {DEFAULT_IMAGE})")
    parser.add_argument("--base", help=f"base image (default: {BASE_IMAGE}, pulled or built offline)")
    args = parser.parse_args(argv)
    try:
        build_image(args.tag, args.base)
    except UsageError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
