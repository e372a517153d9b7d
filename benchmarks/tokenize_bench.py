"""Shard-writing benchmark: our tokenized_shards stage end to end vs raw `tokenizers` encode_batch.

Both tokenize the same mixture-selected documents with the same tokenizer and the
same cores. Ours also shuffles, splits, appends EOS, writes .ds/.ds.index files,
hashes and validates them. Target: within 15% of raw encode throughput.

    python -m benchmarks.tokenize_bench [--pages 800] [--files 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.contract import run_stage
from pipelines.curation import stages as cur
from pipelines.ingest import ingest_crawl_file, ingest_source_dir
from pipelines.lake import Lake
from pipelines.sample import generate_sample
from pipelines.tokenize import stages
from pipelines.tokenize import tokenizer as tk


def build_lake(root: Path, pages: int, files: int) -> Lake:
    generate_sample(root / "sample", seed=3, n_files=files, pages_per_file=pages, scale=4)
    lake = Lake(root / "lake")
    crawl = root / "sample" / "crawl"
    for f in sorted(crawl.iterdir()):
        ingest_crawl_file(lake, crawl, f.name)
        for stage in cur.curation_stages():
            run_stage(stage, lake, f.name)
    for s in stages.SOURCES:
        ingest_source_dir(lake, root / "sample" / "sources", s)
    run_stage(stages.TOKENIZER, lake, vocab_size=8192)
    run_stage(stages.MIXTURE, lake, weights={"web": 0.7, "books": 0.1, "code": 0.1, "arxiv": 0.05, "qa": 0.05}, max_epochs=8)
    return lake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1500)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tokenize.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = build_lake(Path(tmp), args.pages, args.files)
        selection = pq.read_table(lake.data_path("mixture"))
        corpus = stages.load_corpus(lake, columns=("id", "text"))
        text_of = {(s, i): t for s, table in corpus.items()
                   for i, t in zip(table.column("id").to_pylist(), table.column("text").to_pylist())}
        texts = [text_of[(s, i)] for s, i in zip(selection.column("source").to_pylist(), selection.column("id").to_pylist())]
        tok = tk.load_for_encoding(lake.partition_dir("tokenizer"))
        raw_best = ours_best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n_tokens = sum(len(e.ids) + 1 for i in range(0, len(texts), 4096) for e in tok.encode_batch(texts[i:i + 4096]))
            raw_best = min(raw_best, time.perf_counter() - t0)
            t0 = time.perf_counter()
            m = run_stage(stages.SHARDS, lake, shard_tokens=1 << 20)
            ours_best = min(ours_best, time.perf_counter() - t0)
        assert sum(m["tokens"].values()) == n_tokens
    raw_tps, ours_tps = n_tokens / raw_best, n_tokens / ours_best
    print(f"{len(texts)} documents, {n_tokens} tokens (EOS included), best of {args.repeats}")
    print(f"  raw tokenizers encode_batch      {raw_tps:>12.0f} tokens/s")
    print(f"  tokenized_shards end to end      {ours_tps:>12.0f} tokens/s   ({ours_tps / raw_tps:.1%} of raw; target >= 85%)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"documents": len(texts), "tokens": n_tokens, "raw_tokens_per_s": raw_tps,
                                    "ours_tokens_per_s": ours_tps, "ratio": ours_tps / raw_tps}, indent=2))


if __name__ == "__main__":
    main()
