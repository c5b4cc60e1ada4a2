"""Plugins (tasks, backends, sandboxes) by name.

Python entry points are the one source of truth for what is installed, so a third-party
package adds a task without touching this repo. Plugins load lazily: naming a task never
imports torch.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from harness.errors import UsageError


class Registry:
    """Named plugins of one kind, read from the entry-point group `group`."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._extra: dict[str, Any] = {}

    def register(self, name: str, plugin: Any) -> None:
        """Add a plugin in process (tests, notebooks); it shadows an installed one of that name."""
        self._extra[name] = plugin

    def unregister(self, name: str) -> None:
        self._extra.pop(name, None)

    def names(self) -> list[str]:
        installed = {ep.name for ep in entry_points(group=self.group)}
        return sorted(installed | set(self._extra))

    def get(self, name: str) -> Any:
        """The plugin registered as `name`; an unknown name is a UsageError with suggestions."""
        if name in self._extra:
            return self._extra[name]
        for ep in entry_points(group=self.group):
            if ep.name == name:
                return ep.load()
        raise UsageError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (installed: {', '.join(names) or 'none'})"


tasks = Registry("harness.tasks", "task")
backends = Registry("harness.backends", "backend")
sandboxes = Registry("harness.sandboxes", "sandbox")
