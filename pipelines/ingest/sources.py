"""Ingest of non-web corpora (books, code, wiki, arxiv, Q&A) from JSONL / JSONL.gz / Parquet.

Each record needs a text field; `id`, `url`, `title` are used when present. A
malformed line or a record without text is counted and skipped, never fatal.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.ingest.warc import IngestStats, batched
from pipelines.schema import document_id

SOURCE_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def source_files(directory: Path) -> list[Path]:
    """Corpus files below `directory`, sorted so ingest order (and output) is deterministic."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name.endswith(SOURCE_SUFFIXES) and not p.name.startswith("."))


def _iter_raw(path: Path, stats: IngestStats) -> Iterator[tuple[int, dict | None]]:
    """(line or row number, record) pairs; record is None for a line that is not a JSON object."""
    if path.name.endswith(".parquet"):
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            stats.error("unreadable_file", f"{path}: {exc} (is it a complete Parquet file?)")
            return
        row = 0
        for batch in pf.iter_batches(batch_size=2048):
            for rec in batch.to_pylist():
                yield row, rec
                row += 1
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):  # decoded line by line: one bad byte costs one line
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    stats.error("undecodable_line", f"{path}:{lineno}: byte {raw[exc.start:exc.start + 1]!r} at column "
                                                    f"{exc.start + 1} is not UTF-8; re-encode the file as UTF-8")
                    continue
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    stats.error("malformed_json", f"{path}:{lineno}: {exc.msg} at column {exc.colno}")
                    continue
                yield lineno, rec if isinstance(rec, dict) else None
    except (OSError, EOFError) as exc:
        stats.error("unreadable_file", f"{path}: {exc} (expected UTF-8 JSON Lines, optionally gzip-compressed)")


def _as_text(rec: dict, name: str, where: str, stats: IngestStats) -> str | None:
    """A string field as text; other JSON values are kept as their JSON text, and counted."""
    value = rec.get(name)
    if value is None or isinstance(value, str):
        return value
    stats.warn("coerced_field", f"{where}: field {name!r} is {type(value).__name__}, expected a string; stored as its JSON text")
    return json.dumps(value, ensure_ascii=False, default=str)


def ingest_source(directory: Path, source: str, *, text_field: str = "text", batch_size: int = 1000,
                  stats: IngestStats | None = None) -> Iterator[list[dict]]:
    """Yield batches of DOCUMENT_SCHEMA rows for every corpus file under `directory`."""
    stats = stats if stats is not None else IngestStats()
    return batched(_iter_rows(Path(directory), source, text_field, stats), batch_size)


def _iter_rows(directory: Path, source: str, text_field: str, stats: IngestStats) -> Iterator[dict]:
    t0 = time.perf_counter()
    seen_ids: set[str] = set()
    for path in source_files(directory):
        rel = path.relative_to(directory).as_posix()
        stats.file_bytes += path.stat().st_size
        for pos, rec in _iter_raw(path, stats):
            if rec is None:
                stats.error("not_an_object", f"{path}:{pos}: expected a JSON object per line")
                continue
            text = rec.get(text_field)
            if not isinstance(text, str) or not text.strip():
                stats.error("missing_text", f"{path}:{pos}: no non-empty string field {text_field!r}")
                continue
            where = f"{path}:{pos}"
            native = str(rec["id"]) if rec.get("id") is not None else f"{rel}:{pos}"
            if native in seen_ids:  # an id is one document: a second text under it gets its own, traceable id
                stats.warn("duplicate_id", f"{where}: id {native!r} was used before in this source; kept as {native}#{rel}:{pos}")
                native = f"{native}#{rel}:{pos}"
            seen_ids.add(native)
            stats.outcomes["kept"] += 1
            stats.text_chars += len(text)
            stats.payload_bytes += len(text.encode("utf-8"))
            yield {
                "id": document_id(source, native), "source": source, "url": _as_text(rec, "url", where, stats), "crawl": source,
                "date": None, "title": _as_text(rec, "title", where, stats), "text": text, "content_type": "text/plain", "charset": "utf-8",
                "origin_file": rel, "origin_offset": pos, "origin_id": native, "raw_bytes": len(text.encode("utf-8")),
            }
    stats.seconds = time.perf_counter() - t0
