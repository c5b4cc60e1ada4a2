"""Functional-correctness evaluation harness for code-generation models."""

__version__ = "0.1.0"
