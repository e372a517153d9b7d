"""Ingest: crawl files (WARC/WET) and other corpora into DOCUMENT_SCHEMA Parquet."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.contract import Check, CheckResult, Stage, StageContext, config_to_dict, param, require
from pipelines.ingest.remote import CrawlListing, open_remote
from pipelines.ingest.sources import ingest_source
from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.lake import Lake, file_hash
from pipelines.schema import DOCUMENT_SCHEMA, SCHEMA_VERSION

SOURCE_KINDS = ("books", "code", "wiki", "arxiv", "qa")


@dataclass(frozen=True)
class CrawlIngestConfig:
    """Knobs of WARC/WET ingest (defaults suit Common Crawl)."""

    extractor: Literal["resiliparse", "trafilatura"] = param("resiliparse", "HTML main-text extractor")
    min_text_chars: int = param(1, "pages with less extracted text are counted as `no_text`")
    max_record_mb: float = param(20.0, "records with a larger payload are counted as `too_large` and skipped")
    max_lost_share: float = param(0.5, "blocking check: largest share of page records ingest may lose to corruption, "
                                       "truncation or failed decoding/extraction")

    def __post_init__(self):
        require(self.min_text_chars >= 0, self, "min_text_chars", "must be >= 0")
        require(self.max_record_mb > 0, self, "max_record_mb", "must be > 0")
        require(0 <= self.max_lost_share <= 1, self, "max_lost_share", "must be in [0, 1]")


@dataclass(frozen=True)
class SourceIngestConfig:
    """How a JSONL/Parquet corpus maps onto documents."""

    text_field: str = param("text", "the field that holds each document's text")


def write_documents(lake: Lake, asset: str, partition_key: str | None, batches, stats: IngestStats, inputs: dict,
                    config=None) -> dict:
    """Stream row batches into the lake atomically and write the partition manifest."""
    with lake.writer(asset, partition_key, DOCUMENT_SCHEMA) as writer:
        for rows in batches:
            writer.write_rows(rows)
        content_hash = writer.commit()
    manifest = {
        "asset": asset, "partition": partition_key, "schema_version": SCHEMA_VERSION, "rows": writer.rows,
        "content_hash": content_hash, "path": str(writer.path), "inputs": inputs,
        "outcomes": dict(stats.outcomes), "warnings": dict(stats.warnings), "other_records": dict(stats.other_records),
        "content_types": dict(stats.content_types), "file_bytes": stats.file_bytes,
        "payload_bytes": stats.payload_bytes, "text_chars": stats.text_chars,
        "skipped_bytes": stats.skipped_bytes, "errors": stats.errors, "seconds": round(stats.seconds, 3),
        "config": config_to_dict(config) if config is not None else {},
    }
    lake.write_manifest(asset, partition_key, manifest)
    return manifest


def ingest_crawl_file(lake: Lake, crawl_dir: Path, partition_key: str, progress=None,
                      config: CrawlIngestConfig = CrawlIngestConfig(), listing: CrawlListing | None = None) -> dict:
    """Ingest one crawl file into the `raw_crawl` asset; returns its manifest.

    The key names a file under `crawl_dir` or, when there is none and a listing with a base URL is
    configured, the file at `listing.url(key)` (http(s):// or s3://), read in ranges as it is parsed."""
    root = Path(crawl_dir).resolve()
    path = (root / partition_key).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"partition key {partition_key!r} points outside CRAWL_DIR ({root}); keys are paths relative to it")
    stats = IngestStats()
    limits = {"extractor": config.extractor, "min_text_chars": config.min_text_chars,
              "max_record_bytes": int(config.max_record_mb * (1 << 20))}
    if not path.is_file() and listing is not None and listing.base_url:
        with open_remote(listing.url(partition_key), listing) as remote:
            inputs = {"url": remote.url, "size": remote.size, "etag": remote.etag, "last_modified": remote.last_modified}

            def batches():
                yield from ingest_warc(remote, partition_key, stats=stats, progress=progress, **limits)
                inputs["reconnects"] = remote.reconnects  # dropped connections resumed mid-file

            return write_documents(lake, "raw_crawl", partition_key, batches(), stats, inputs, config)
    if not path.is_file():
        raise FileNotFoundError(f"crawl file {path} not found: is CRAWL_DIR ({crawl_dir}) right, or was the file moved?")
    batches = ingest_warc(path, partition_key, stats=stats, progress=progress, **limits)
    inputs = {"file": str(path), "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns,
              "xxh3_128": file_hash(path)}  # which bytes made this partition, for lineage
    return write_documents(lake, "raw_crawl", partition_key, batches, stats, inputs, config)


def ingest_source_dir(lake: Lake, sources_dir: Path, source: str, config: SourceIngestConfig = SourceIngestConfig()) -> dict:
    """Ingest every corpus file under `sources_dir/source` into the `source_<source>` asset."""
    directory = Path(sources_dir) / source
    stats = IngestStats()
    batches = ingest_source(directory, source, stats=stats, text_field=config.text_field)
    files = [str(p) for p in sorted(directory.rglob("*")) if p.is_file()] if directory.is_dir() else []
    return write_documents(lake, f"source_{source}", None, batches, stats, {"directory": str(directory), "files": files}, config)


def _need_inputs(ctx: StageContext):
    if ctx.inputs is None:
        raise ValueError("ingest needs the input locations (CRAWL_DIR, SOURCES_DIR): pass StageContext.inputs")
    return ctx.inputs


def _ingest_crawl(ctx: StageContext, cfg: CrawlIngestConfig) -> dict:
    inputs = _need_inputs(ctx)
    manifest = ingest_crawl_file(ctx.lake, inputs.crawl_dir, ctx.partition, ctx.log, cfg, inputs.crawl_listing)
    skipped = {k: v for k, v in manifest["outcomes"].items() if k != "kept"}
    ctx.log(f"{ctx.partition}: kept {manifest['rows']} documents; skipped {skipped}")
    for err in manifest["errors"][:5]:
        ctx.warn(err)
    return manifest


def _ingest_source(kind: str, ctx: StageContext, cfg: SourceIngestConfig) -> dict:
    manifest = ingest_source_dir(ctx.lake, _need_inputs(ctx).sources_dir, kind, cfg)
    if not manifest["rows"]:
        ctx.warn(f"no {kind} documents under {manifest['inputs']['directory']}")
    return manifest


LOSSES = ("corrupt_record", "truncated", "undecodable", "binary_content", "extraction_failed")  # pages ingest failed to read


def _nothing_readable_lost(lake: Lake, manifest: dict) -> CheckResult:
    """Data loss fails the run; legitimate skips (non-HTML, HTTP errors, crawler logs) do not."""
    outcomes = manifest["outcomes"]
    lost = sum(outcomes.get(k, 0) for k in LOSSES)
    share = lost / max(lost + outcomes.get("kept", 0), 1)
    limit = manifest["config"]["max_lost_share"]
    return CheckResult(share <= limit and "not_a_warc" not in outcomes,
                       {"lost_records": lost, "lost_share": round(share, 4), "limit": limit,
                        "not_a_warc": outcomes.get("not_a_warc", 0)})


RAW_CRAWL = Stage(
    name="raw_crawl", config=CrawlIngestConfig, partitioned=True, reads_inputs=True, run=_ingest_crawl,
    checks=(Check("ingest_lost_no_readable_pages", "At most `max_lost_share` of page records were lost to corruption, "
                  "truncation or failed decoding, and the file is a WARC/WET file.", _nothing_readable_lost),),
    description="Documents extracted from one crawl file (WARC or WET, gzip or plain).\n\nHTML responses are decoded "
                "(HTTP/meta charset, then detection) and reduced to their main text; every other record ends in a counted "
                "outcome (non-HTML, HTTP error, corrupt, undecodable ...). Output: `raw_crawl/<file>/part-00000.parquet`.")


def source_stage(kind: str) -> Stage:
    return Stage(
        name=f"source_{kind}", config=SourceIngestConfig, reads_inputs=True, run=functools.partial(_ingest_source, kind),
        description=f"The `{kind}` corpus: every JSONL / JSONL.gz / Parquet file under SOURCES_DIR/{kind}, as documents "
                    "in the lake's schema. Malformed lines are counted and skipped.")


SOURCE_STAGES = [source_stage(kind) for kind in SOURCE_KINDS]
