"""Fixture data of the tasks: small hand-written files in each upstream dataset's columns."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
