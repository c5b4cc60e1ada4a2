"""The Docker engine as the docker sandbox sees it: the `docker` CLI, reached by subprocess.

Everything that can go wrong before a container runs (no CLI, no daemon, no image, a stale
image) is a one-line UsageError that says what to do; nothing here imports the docker package.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from harness.errors import UsageError

DEFAULT_IMAGE = "harness-sandbox:latest"
BASE_IMAGE = "harness-sandbox-base:bookworm"
FORKSERVER = Path(__file__).resolve().parents[1] / "forkserver.py"
IMAGE_LABEL = "harness.sandbox.image"
DIGEST_LABEL = "harness.sandbox.forkserver-sha256"
BUILD_HINT = "run `harness sandbox build-image`"
ENGINE_TIMEOUT_S = 30.0


class EngineError(Exception):
    """A docker command failed; the message is docker's own first line."""


def docker_cli() -> str:
    """Path of the docker CLI, or a UsageError saying how to get one."""
    path = shutil.which("docker")
    if path is None:
        raise UsageError(
            "docker sandbox: no `docker` command on PATH; install a Docker engine (Debian: apt-get install docker.io), "
            f"start it, then {BUILD_HINT}"
        )
    return path


def docker(*args: str, timeout: float | None = ENGINE_TIMEOUT_S, stdin: bytes | None = None) -> str:
    """Run `docker ARGS`; return its stdout, or raise EngineError with docker's first error line."""
    try:
        done = subprocess.run([docker_cli(), *args], input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EngineError(f"`docker {args[0]}` did not answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise EngineError(first_line(done.stderr) or f"`docker {args[0]}` exited with status {done.returncode}")
    return done.stdout.decode(errors="replace")


def first_line(data: bytes) -> str:
    """The first non-empty line of docker's output, without docker's "Error response from daemon: " prefix."""
    for line in data.decode(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("DEPRECATED"):
            return line.removeprefix("Error response from daemon: ")
    return ""


def require_engine() -> str:
    """The server's version; a UsageError when there is no CLI or the daemon does not answer."""
    try:
        return docker("version", "--format", "{{.Server.Version}}").strip()
    except EngineError as exc:
        raise UsageError(
            f"docker sandbox: the Docker engine is not reachable ({exc}); start dockerd (or set DOCKER_HOST), "
            f"then {BUILD_HINT}"
        ) from None


def image_labels(image: str) -> dict[str, str] | None:
    """The labels of a local image, or None when the engine has no such image."""
    import json

    try:
        out = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image)
    except EngineError:
        return None
    return json.loads(out.strip() or "null") or {}


def forkserver_digest() -> str:
    """sha256 of the fork server in this tree: what a current image was built from."""
    if not FORKSERVER.is_file():
        raise UsageError(f"docker sandbox: {FORKSERVER} is missing; the docker image is built from it")
    return hashlib.sha256(FORKSERVER.read_bytes()).hexdigest()


def require_image(image: str) -> None:
    """A UsageError unless `image` exists locally and carries the fork server of this tree."""
    labels = image_labels(image)
    if labels is None:
        raise UsageError(f"docker sandbox: no image {image!r} in the Docker engine; {BUILD_HINT}")
    if IMAGE_LABEL not in labels:
        raise UsageError(
            f"docker sandbox: image {image!r} is not a sandbox image (no {IMAGE_LABEL} label); {BUILD_HINT}"
        )
    if labels.get(DIGEST_LABEL) != forkserver_digest():
        raise UsageError(
            f"docker sandbox: image {image!r} holds another sandbox/forkserver.py than this tree; {BUILD_HINT}"
        )
