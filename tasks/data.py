"""A task's dataset: from the Hugging Face hub by name, or from a local copy (--data).

A local copy has the upstream columns and is a JSONL, JSON, Parquet or CSV file (one split),
or a folder written by `datasets`' save_to_disk (a Dataset, or a DatasetDict whose split
--split picks). Problems come out as plain dicts, one per row, in the file's order, so a row
index is a stable task id. Bad input (a missing column, an empty file, an unknown split, an
unreachable hub) is a UsageError that names the file and the column.

`datasets` is imported here, when a task loads, never when the harness starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class Source:
    """Where a task's data lives upstream, and the columns the task reads."""

    hub: str  # the dataset's name on the hub
    columns: tuple[str, ...]
    split: str  # the split evaluated when --split is not given
    config: str | None = None  # the hub dataset's configuration, e.g. "python"


def load_rows(source: Source, data: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """The rows of the evaluated split, checked against the columns the task reads."""
    datasets = _datasets()
    if data is None:
        table, where = _from_hub(datasets, source, split or source.split), source.hub
    else:
        table, where = _from_local(datasets, data, split or source.split, split is not None), data
    missing = [c for c in source.columns if c not in table.column_names]
    if missing:
        raise UsageError(
            f"{where}: missing column {missing[0]!r} (this task reads the columns {', '.join(source.columns)})"
        )
    if len(table) == 0:
        raise UsageError(f"{where} holds no rows")
    return table.to_list()


def data_sha256(path: str) -> str:
    """sha256 of a data file, or of a saved dataset folder's files (names and contents, in order)."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UsageError("this task needs the `datasets` package: pip install datasets") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _from_hub(datasets: Any, source: Source, split: str) -> Any:
    try:
        return datasets.load_dataset(source.hub, source.config, split=split)
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise UsageError(f"{source.hub} has no split {split!r} ({_first_line(exc)})") from None
        raise UsageError(f"cannot load {source.hub!r} from the Hugging Face hub: {_first_line(exc)}") from None
    except Exception as exc:  # unreachable hub, missing dataset, damaged cache: the user's to fix
        raise UsageError(
            f"cannot load {source.hub!r} from the Hugging Face hub ({_first_line(exc)}); "
            "pass --data with a local copy (JSONL, JSON, Parquet, CSV, or a saved dataset folder)"
        ) from None


def _from_local(datasets: Any, path: str, split: str, split_given: bool) -> Any:
    local = Path(path)
    if not local.exists():
        raise UsageError(f"cannot read --data {path}: no such file or folder")
    if local.is_dir():
        return _from_folder(datasets, path, split, split_given)
    if split_given:
        raise UsageError(f"--split {split!r} does not apply to {path}: a data file holds one split")
    suffixes = [s.lower() for s in local.suffixes]
    if suffixes[-1:] == [".gz"]:  # datasets decompresses on the fly
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise UsageError(f"{path}: unknown data format (use .jsonl, .json, .parquet, .csv, or a saved dataset folder)")
    if local.stat().st_size == 0:
        raise UsageError(f"{path} is empty")
    try:
        return datasets.load_dataset(kind, data_files=str(local), split="train")
    except Exception as exc:  # a malformed file
        if "corresponds to no data" in str(exc):  # datasets' words for a file without rows
            raise UsageError(f"{path} holds no rows") from None
        raise UsageError(f"cannot read {path} as {kind}: {_first_line(exc)}") from None


def _from_folder(datasets: Any, path: str, split: str, split_given: bool) -> Any:
    try:
        saved = datasets.load_from_disk(path)
    except Exception as exc:
        raise UsageError(f"cannot read {path} as a saved dataset: {_first_line(exc)}") from None
    if not isinstance(saved, datasets.DatasetDict):
        if split_given:
            raise UsageError(f"--split {split!r} does not apply to {path}: it holds one split")
        return saved
    if split not in saved:
        raise UsageError(f"{path} has no split {split!r} (it has: {', '.join(saved)})")
    return saved[split]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
