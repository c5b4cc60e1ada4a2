"""Sandboxes that run untrusted generated code: the process backend, later Docker."""
