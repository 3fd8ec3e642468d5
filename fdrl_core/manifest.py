"""Rows of a corpus manifest (CSV or JSONL: path, text, ...) without the training package.

Calibration data for INT8 (export/) and the feature tools need the audio paths and texts of a corpus;
they must not import `train` (dependencies point one way). Relative paths resolve against the
manifest's folder. Errors name the file and line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")


def find_manifest(path: str | Path) -> Path | None:
    """`path` itself when it is a .csv/.jsonl file, else a manifest.jsonl/.csv inside the folder."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        return p
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return p / name
    return None


def read_utf8(path: str | Path) -> str:
    """The whole text of a small text file; a byte that is not UTF-8 is reported with its line and column
    (spreadsheets often save Latin-1 or Windows-1252)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{path} line {line} column {col}: byte 0x{data[e.start]:02x} is not UTF-8; "
                         "save the file as UTF-8") from None


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line; line numbers are the file's, so errors point at the row."""
    path = Path(path)
    for n, line in enumerate(read_utf8(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path.name} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path.name} line {n}: expected a JSON object")
        yield n, row


def manifest_rows(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, row dict) per utterance from CSV (BOM tolerated: Excel writes one) or JSONL;
    ValueError with file and line for malformed input, and for a CSV header without a `required` column."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        yield from jsonl_rows(path)
        return
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: a manifest must be a .csv or .jsonl file")
    with io.StringIO(read_utf8(path), newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for col in required:
            if col not in header:
                raise ValueError(f"{path.name} line 1: missing required column {col!r} (header: {','.join(header)})")
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}


def audio_and_text(path: str | Path) -> list[tuple[Path, str]]:
    """(absolute audio path, transcript) for every row; rows need `path`, `text` may be empty."""
    path = Path(path)
    out = []
    for n, row in manifest_rows(path):
        if not row.get("path"):
            raise ValueError(f"{path.name} line {n}: no 'path'")
        audio = Path(str(row["path"])).expanduser()
        out.append((audio if audio.is_absolute() else path.parent / audio, str(row.get("text") or "")))
    return out
