"""The one document schema shared by every stage of the lake.

Stages add columns (lang, lang_score, dup_cluster, pii_counts, toxicity, ...) but
never rename or drop these. `origin_*` columns point back to the exact bytes a
document came from, which is what makes "where did this text come from?" answerable.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

SCHEMA_VERSION = 1

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # 32 hex chars, stable across re-ingest
        pa.field("source", pa.string(), nullable=False),  # "web" or a source kind: books, code, wiki, ...
        pa.field("url", pa.string()),
        pa.field("crawl", pa.string()),  # crawl/snapshot name, e.g. CC-MAIN-2024-10; source kind otherwise
        pa.field("date", pa.timestamp("us", tz="UTC")),  # fetch date (WARC-Date)
        pa.field("title", pa.string()),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("content_type", pa.string()),
        pa.field("charset", pa.string()),  # encoding the payload was decoded with
        pa.field("origin_file", pa.string(), nullable=False),  # input file, relative to its input root
        pa.field("origin_offset", pa.int64()),  # byte offset of the WARC record, or line/row number
        pa.field("origin_id", pa.string()),  # WARC-Record-ID (response record) or the source's own id
        pa.field("raw_bytes", pa.int64()),  # payload size before decoding/extraction
    ]
)


def document_id(namespace: str, native_id: str) -> str:
    """Stable id: 128-bit BLAKE2b of the origin's own identifier, so re-ingest gives the same id."""
    return hashlib.blake2b(f"{namespace}\x1f{native_id}".encode(), digest_size=16).hexdigest()
