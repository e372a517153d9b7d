"""Ingest: crawl files (WARC/WET) and other corpora into DOCUMENT_SCHEMA Parquet."""

from __future__ import annotations

from pathlib import Path

from pipelines.ingest.sources import ingest_source
from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.lake import Lake
from pipelines.schema import DOCUMENT_SCHEMA, SCHEMA_VERSION


def write_documents(lake: Lake, asset: str, partition_key: str | None, batches, stats: IngestStats, inputs: dict) -> dict:
    """Stream row batches into the lake atomically and write the partition manifest."""
    with lake.writer(asset, partition_key, DOCUMENT_SCHEMA) as writer:
        for rows in batches:
            writer.write_rows(rows)
        content_hash = writer.commit()
    manifest = {
        "asset": asset, "partition": partition_key, "schema_version": SCHEMA_VERSION, "rows": writer.rows,
        "content_hash": content_hash, "path": str(writer.path), "inputs": inputs,
        "outcomes": dict(stats.outcomes), "other_records": dict(stats.other_records),
        "content_types": dict(stats.content_types), "file_bytes": stats.file_bytes,
        "payload_bytes": stats.payload_bytes, "text_chars": stats.text_chars,
        "skipped_bytes": stats.skipped_bytes, "errors": stats.errors, "seconds": round(stats.seconds, 3),
    }
    lake.write_manifest(asset, partition_key, manifest)
    return manifest


def ingest_crawl_file(lake: Lake, crawl_dir: Path, partition_key: str, progress=None, **options) -> dict:
    """Ingest `crawl_dir/partition_key` into the `raw_crawl` asset; returns its manifest."""
    path = Path(crawl_dir) / partition_key
    if not path.is_file():
        raise FileNotFoundError(f"crawl file {path} not found: is CRAWL_DIR ({crawl_dir}) right, or was the file moved?")
    stats = IngestStats()
    batches = ingest_warc(path, partition_key, stats=stats, progress=progress, **options)
    inputs = {"file": str(path), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
    return write_documents(lake, "raw_crawl", partition_key, batches, stats, inputs)


def ingest_source_dir(lake: Lake, sources_dir: Path, source: str, **options) -> dict:
    """Ingest every corpus file under `sources_dir/source` into the `source_<source>` asset."""
    directory = Path(sources_dir) / source
    stats = IngestStats()
    batches = ingest_source(directory, source, stats=stats, **options)
    files = [str(p) for p in sorted(directory.rglob("*")) if p.is_file()] if directory.is_dir() else []
    return write_documents(lake, f"source_{source}", None, batches, stats, {"directory": str(directory), "files": files})
