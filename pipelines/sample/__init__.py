"""Seeded, offline sample data: a CC-shaped web crawl and small corpora for other sources."""

from __future__ import annotations

from pathlib import Path

from pipelines.sample.chat import write_chat_data
from pipelines.sample.crawl import generate_crawl
from pipelines.sample.sources import generate_sources


def generate_sample(root: Path, seed: int = 0, n_files: int = 3, pages_per_file: int = 120, scale: int = 1) -> dict:
    """Write `root/crawl/*.warc*`, `root/sources/<kind>/*`, `root/chat/*.jsonl` and `root/crawl_truth.jsonl`."""
    root = Path(root)
    truth = generate_crawl(root / "crawl", root / "crawl_truth.jsonl", seed=seed, n_files=n_files, pages_per_file=pages_per_file)
    sources = generate_sources(root / "sources", seed=seed, scale=scale)
    chat = write_chat_data(root / "chat", seed=seed)
    return {"crawl_dir": root / "crawl", "sources_dir": root / "sources", "records": len(truth), "sources": sources, "chat": chat}
