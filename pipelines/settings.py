"""Where things live, from environment variables with defaults that work from the repo root.

LAKE_DIR     lake root (Parquet per asset/partition + catalog.duckdb)   default ./lake
             or s3://bucket/prefix (pipelines.lake.ObjectStore; AWS_ENDPOINT_URL for MinIO & co)
LAKE_WORK_DIR  an s3:// lake's local work directory (models, token shards, caches)  default ~/.cache/llm-foundry/lakes/<hash>
CRAWL_DIR    directory watched for WARC/WET files (recursively)         default ./data/sample/crawl
SOURCES_DIR  one sub-directory per non-web source (books, code, ...)    default ./data/sample/sources
CHAT_DIR     sft.jsonl, preferences.jsonl, eval_prompts.jsonl             default ./data/sample/chat
REALDATA_DIR public real data for quality figures (tests/benchmarks skip without it)  default ../shared/realdata
CRAWL_LISTING, CRAWL_BASE_URL, CRAWL_SAMPLE  a snapshot's warc.paths(.gz), its base URL, the sample of it
             (pipelines.ingest.remote.CrawlListing; read in orchestration.resources)
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

DEFAULTS = {"LAKE_DIR": "lake", "CRAWL_DIR": "data/sample/crawl", "SOURCES_DIR": "data/sample/sources",
            "CHAT_DIR": "data/sample/chat", "REALDATA_DIR": "../shared/realdata"}


def setting_location(name: str) -> Path | str:
    """Like `setting_path`, but a URL (s3://...) is returned as it is."""
    value = os.environ.get(name) or DEFAULTS[name]
    return value if "://" in value else setting_path(name)


def setting_path(name: str) -> Path:
    """The configured path for `name`, absolute, resolved against the current directory."""
    return Path(os.environ.get(name) or DEFAULTS[name]).expanduser().resolve()


@functools.cache
def code_commit() -> str | None:
    """The git commit the code runs from (with `-dirty` when tracked files are modified), for lineage;
    None outside a git checkout (an installed package)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")
