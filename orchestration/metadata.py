"""Materialization metadata shared by assets: outcome tables, document previews, paths."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

PREVIEW_COLUMNS = ("id", "url", "title", "text")


def counts_table(counts: dict[str, int], label: str) -> dg.MetadataValue:
    total = sum(counts.values()) or 1
    schema = dg.TableSchema(columns=[dg.TableColumn(label, "string"), dg.TableColumn("count", "int"), dg.TableColumn("share", "string")])
    rows = [dg.TableRecord({label: k, "count": int(v), "share": f"{v / total:.1%}"})
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return dg.MetadataValue.table(rows, schema=schema)


def preview_table(path: Path, n: int = 5, text_chars: int = 200) -> dg.MetadataValue:
    """The first `n` documents of a Parquet file, text shortened for the UI."""
    pf = pq.ParquetFile(path)
    cols = [c for c in PREVIEW_COLUMNS if c in pf.schema_arrow.names]
    rows = []
    if pf.metadata.num_rows:
        batch = next(pf.iter_batches(batch_size=n, columns=cols))
        for rec in batch.to_pylist():
            rec = {k: ("" if v is None else str(v)) for k, v in rec.items()}
            if "text" in rec:
                rec["text"] = rec["text"][:text_chars].replace("\n", " / ") + ("..." if len(rec["text"]) > text_chars else "")
            rows.append(dg.TableRecord(rec))
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in cols])
    return dg.MetadataValue.table(rows, schema=schema)


def ingest_metadata(manifest: dict) -> dict:
    """What a user wants on an ingest materialization: outcomes, volume, speed, a preview, paths."""
    mb = 1 << 20
    secs = max(manifest["seconds"], 1e-9)
    records = sum(manifest["outcomes"].values())
    meta = {
        "documents": dg.MetadataValue.int(manifest["rows"]),
        "records": dg.MetadataValue.int(records),
        "outcomes": counts_table(manifest["outcomes"], "outcome"),
        "input_mb": dg.MetadataValue.float(round(manifest["file_bytes"] / mb, 3)),
        "payload_mb": dg.MetadataValue.float(round(manifest["payload_bytes"] / mb, 3)),
        "text_mb": dg.MetadataValue.float(round(manifest["text_chars"] / mb, 3)),
        "records_per_s": dg.MetadataValue.float(round(records / secs, 1)),
        "input_mb_per_s": dg.MetadataValue.float(round(manifest["file_bytes"] / mb / secs, 2)),
        "preview": preview_table(Path(manifest["path"])),
        "path": dg.MetadataValue.path(manifest["path"]),
        "content_hash": dg.MetadataValue.text(manifest["content_hash"]),
    }
    if manifest.get("content_types"):
        meta["content_types"] = dg.MetadataValue.json(manifest["content_types"])
    if manifest.get("other_records"):
        meta["other_warc_records"] = dg.MetadataValue.json(manifest["other_records"])
    if manifest.get("skipped_bytes"):
        meta["corrupt_bytes_skipped"] = dg.MetadataValue.int(manifest["skipped_bytes"])
    if manifest.get("errors"):
        meta["first_errors"] = dg.MetadataValue.md("\n".join(f"- `{e}`" for e in manifest["errors"]))
    return meta
