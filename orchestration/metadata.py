"""Materialization metadata shared by assets: outcome tables, document previews, paths."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from pipelines.contract import rounded

PREVIEW_COLUMNS = ("id", "url", "title", "text")
# manifest keys that are bookkeeping, not something a user reads on the asset page
_NOT_SHOWN = {"asset", "partition", "content_hash", "inputs", "rows_in", "rows", "reasons", "seconds", "path", "report",
              "schema_version"}


def counts_table(counts: dict[str, int], label: str) -> dg.MetadataValue:
    total = sum(counts.values()) or 1
    schema = dg.TableSchema(columns=[dg.TableColumn(label, "string"), dg.TableColumn("count", "int"), dg.TableColumn("share", "string")])
    rows = [dg.TableRecord({label: k, "count": int(v), "share": f"{v / total:.1%}"})
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return dg.MetadataValue.table(rows, schema=schema)


def open_parquet(location: str) -> pq.ParquetFile:
    """A Parquet file by the location its manifest recorded: a local path or an s3:// URL (AWS_ENDPOINT_URL & co)."""
    if "://" in location:
        fs, path = pafs.FileSystem.from_uri(location)
        return pq.ParquetFile(fs.open_input_file(path))
    return pq.ParquetFile(location)


def preview_table(path: str, n: int = 5, text_chars: int = 200) -> dg.MetadataValue:
    """The first `n` documents of a Parquet file, text shortened for the UI."""
    pf = open_parquet(str(path))
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
        "preview": preview_table(manifest["path"]),
        "path": dg.MetadataValue.path(manifest["path"]),
        "content_hash": dg.MetadataValue.text(manifest["content_hash"]),
    }
    if manifest.get("warnings"):
        meta["repaired_records"] = counts_table(manifest["warnings"], "repair")
    if manifest.get("config"):
        meta["config"] = dg.MetadataValue.json(rounded(manifest["config"]))
    if manifest.get("content_types"):
        meta["content_types"] = dg.MetadataValue.json(manifest["content_types"])
    if manifest.get("other_records"):
        meta["other_warc_records"] = dg.MetadataValue.json(manifest["other_records"])
    if manifest.get("skipped_bytes"):
        meta["corrupt_bytes_skipped"] = dg.MetadataValue.int(manifest["skipped_bytes"])
    if manifest.get("errors"):
        meta["first_errors"] = dg.MetadataValue.md("\n".join(f"- `{e}`" for e in manifest["errors"]))
    return meta


def rows_table(rows: list[dict]) -> dg.MetadataValue:
    """A list of same-shaped dicts as a table (values shown as text, floats rounded)."""
    cols = list(rows[0]) if rows else []
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in cols])
    fmt = {float: lambda x: f"{x:.4g}"}
    return dg.MetadataValue.table([dg.TableRecord({k: fmt.get(type(v), str)(v) for k, v in r.items()}) for r in rows], schema=schema)


def _value(v) -> dg.MetadataValue:
    if isinstance(v, bool):
        return dg.MetadataValue.bool(v)
    if isinstance(v, int):
        return dg.MetadataValue.int(v)
    if isinstance(v, float):
        return dg.MetadataValue.float(round(v, 4))
    if isinstance(v, str):
        return dg.MetadataValue.text(v)
    return dg.MetadataValue.json(rounded(v))


def plain_metadata(values: dict) -> dict:
    """Typed metadata from plain Python values (what library checks return)."""
    return {k: _value(v) for k, v in values.items()}


def manifest_metadata(manifest: dict) -> dict:
    """What a user wants on a stage's materialization, from its manifest: volume, speed, reasons,
    counts as tables, the config it ran with, a preview of documents, the path."""
    meta = {}
    if "rows_in" in manifest:
        meta["documents_in"] = dg.MetadataValue.int(manifest["rows_in"])
        meta["documents_out"] = dg.MetadataValue.int(manifest["rows"])
        meta["docs_per_s"] = dg.MetadataValue.float(round(manifest["rows_in"] / max(manifest["seconds"], 1e-9), 1))
    elif "rows" in manifest:
        meta["rows"] = dg.MetadataValue.int(manifest["rows"])
    if "seconds" in manifest:
        meta["seconds"] = dg.MetadataValue.float(rounded(manifest["seconds"]))
    if manifest.get("reasons"):
        meta["drop_reasons"] = counts_table(manifest["reasons"], "reason")
    for key, v in manifest.items():
        if key in _NOT_SHOWN:
            continue
        if isinstance(v, dict) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v.values()):
            meta[key] = counts_table(v, key)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v) and len({tuple(x) for x in v}) == 1:
            meta[key] = rows_table(v)
        elif isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) and len({tuple(x) for x in v.values()}) == 1:
            meta[key] = rows_table([{key: k, **x} for k, x in v.items()])  # one row per entry, named in the first column
        else:
            meta[key] = _value(v)
    if "report" in manifest:
        meta["report"] = dg.MetadataValue.md(manifest["report"])
    path = manifest.get("path")
    if path:
        meta["path"] = dg.MetadataValue.path(path)
        if path.endswith(".parquet") and "text" in open_parquet(path).schema_arrow.names:
            meta["preview"] = preview_table(path)
    return meta
