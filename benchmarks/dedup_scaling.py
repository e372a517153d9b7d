"""Dedup as the index grows: per-partition time of the incremental index at 4, 16 and 64 earlier
partitions (same partition size), beside datasketch's in-memory MinHashLSH doing the same
query + insert per partition, and batch mode over the whole set against the incremental total.

Partitions are generated: unique pages plus, in each, ~10% exact or edited copies of pages from
earlier partitions, so lookups find real matches. One process, one core for the incremental runs.

    python -m benchmarks.dedup_scaling [--partitions 64] [--docs 1000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.curation.dedup import DedupConfig, DedupIndex, text_hash
from pipelines.curation.dedup_batch import batch_deduplicate
from pipelines.engine import Engine, EngineConfig
from pipelines.sample.text import TextGenerator

CHECKPOINTS = (4, 16, 64)


def generate(n_partitions: int, docs: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    gen = TextGenerator(rng)
    topics = ("city", "food", "science", "sports", "technology")
    parts, seen = [], []
    for p in range(n_partitions):
        ids, texts = [], []
        for i in range(docs):
            if seen and rng.random() < 0.1:
                text = rng.choice(seen)
                text = text if rng.random() < 0.5 else text.replace(".", "!", 2) + " Updated."
            else:
                text = "\n".join(gen.paragraphs(rng.choice(("en", "de", "fr")), rng.choice(topics), 3))
            ids.append(f"p{p}-{i}")
            texts.append(text)
        seen.extend(texts[:50])
        parts.append((ids, texts))
    return parts


def incremental(parts, root: Path, config: DedupConfig, repeats: int) -> tuple[list[dict], dict[int, dict]]:
    """Every partition in order (timed once), and at each checkpoint k the next partition timed `repeats`
    times on copies of the k-partition index (the minimum: this machine's CPU time is noisy)."""
    index, hasher, out, probes = DedupIndex(root), config.hasher(), [], {}
    for p, (ids, texts) in enumerate(parts):
        if p in CHECKPOINTS:
            hashing, dedup = [], []
            for r in range(repeats):
                t0 = time.perf_counter()
                hasher.band_keys(hasher.signatures(texts))
                [text_hash(t) for t in texts]
                hashing.append(time.perf_counter() - t0)  # what deduplicate spends before it touches the index
                copy = root.parent / f"probe-{p}-{r}"
                shutil.copytree(root, copy)
                t0 = time.perf_counter()
                DedupIndex(copy).deduplicate(f"p{p}", ids, texts, config)
                dedup.append(time.perf_counter() - t0)
                shutil.rmtree(copy)
            probes[p] = {"seconds": min(dedup), "index_seconds": min(dedup) - min(hashing)}
        t0 = time.perf_counter()
        res = index.deduplicate(f"p{p}", ids, texts, config)
        out.append({"seconds": time.perf_counter() - t0, "dropped": int((~res.keep).sum()), "dup_of": res.dup_of})
    return out, probes


def datasketch_lsh(parts, config: DedupConfig) -> list[float]:
    """The reference: datasketch MinHashLSH in RAM, fed our signatures (query, then insert)."""
    from datasketch import LeanMinHash, MinHashLSH

    hasher = config.hasher()
    lsh = MinHashLSH(num_perm=hasher.num_perm, params=(hasher.bands, hasher.rows))
    out = []
    for ids, texts in parts:
        t0 = time.perf_counter()
        sigs = hasher.signatures(texts)
        for doc_id, sig in zip(ids, sigs):
            m = LeanMinHash(seed=hasher.seed, hashvalues=sig, scheme="affine32")  # our values are 32-bit affine minima
            lsh.query(m)
            lsh.insert(doc_id, m, check_duplication=False)
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partitions", type=int, default=68)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    config = DedupConfig()
    t0 = time.perf_counter()
    parts = generate(args.partitions, args.docs)
    print(f"generated {args.partitions} partitions x {args.docs} docs in {time.perf_counter() - t0:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs, probes = incremental(parts, tmp / "incremental", config, args.repeats)
        ref = datasketch_lsh(parts, config)
        files = []
        for p, (ids, texts) in enumerate(parts):
            files.append((f"p{p}", tmp / f"p{p}.parquet"))
            pq.write_table(pa.table({"id": ids, "text": texts}), files[-1][1])
        t0 = time.perf_counter()
        batch = batch_deduplicate(DedupIndex(tmp / "batch"), files, config, Engine(EngineConfig(workers=args.workers)))
        batch_seconds = time.perf_counter() - t0
        index_mb = sum(f.stat().st_size for f in (tmp / "incremental").rglob("*") if f.is_file()) / 1e6
    same = all(batch[f"p{p}"].dup_of == r["dup_of"] for p, r in enumerate(runs))
    ref_at = {k: statistics.median(ref[max(0, k - 3):k + 4]) for k in probes}
    print(f"\n{args.docs} docs per partition; index after {len(parts)} partitions: {index_mb:.0f} MB; "
          f"dropped {sum(r['dropped'] for r in runs)} of {len(parts) * args.docs}")
    print(f"| partitions already in the index | ours, the next partition (s, min of {args.repeats}) | of which the index (s) "
          "| datasketch MinHashLSH in RAM (s, median of 7) |")
    print("|---|---|---|---|")
    for k, probe in probes.items():
        print(f"| {k} | {probe['seconds']:.3f} | {probe['index_seconds']:.3f} | {ref_at[k]:.3f} |")
    first, last = min(probes), max(probes)
    print(f"\ngrowth {first} -> {last} partitions: ours {probes[last]['seconds'] / probes[first]['seconds']:.2f}x, index part "
          f"{probes[last]['index_seconds'] / probes[first]['index_seconds']:.2f}x, datasketch {ref_at[last] / ref_at[first]:.2f}x")
    worst = max(range(len(runs)), key=lambda p: runs[p]["seconds"])
    print(f"all {len(runs)} partitions in order, merges included: mean {statistics.mean(r['seconds'] for r in runs):.3f} s, "
          f"slowest {runs[worst]['seconds']:.3f} s (partition {worst})")
    total = sum(r["seconds"] for r in runs)
    print(f"batch mode, {len(parts)} partitions, {args.workers} workers: {batch_seconds:.1f} s vs incremental "
          f"one after another {total:.1f} s ({total / batch_seconds:.2f}x); same decisions: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
