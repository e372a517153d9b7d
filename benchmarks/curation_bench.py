"""Curation benchmark: our stages vs datasketch (naive) and datatrove, on the same documents.

Each case runs in its own subprocess on one core, so wall time is per-core time and
peak RSS is the case's own. Cases:

  signatures  ours (batched numpy)  vs  datasketch MinHash.update per shingle  vs  datatrove MinhashDedupSignature
  dedup       ours (signatures + run-file index + union-find)  vs  datasketch MinHashLSH
              vs  datatrove's 4 MinHash stages (signature, buckets, cluster, filter)
  curation    ours (language ID, PII, toxicity, quality tags + filter)  vs  datatrove
              (LanguageFilter, Gopher repetition + quality, C4, FineWeb filters, PIIFormatter)
  accuracy    near-dup precision/recall on labeled pairs at known Jaccard levels

    python -m benchmarks.curation_bench [--pages 500] [--files 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FINEWEB_BANDS, FINEWEB_ROWS = 14, 8  # same LSH shape for every dedup case


def _load(data: Path) -> pa.Table:
    return pq.read_table(data / "docs.parquet")


# ---- cases (each runs in a fresh process) ------------------------------------------
def case_sig_ours(data: Path) -> dict:
    from pipelines.curation.minhash import MinHasher

    texts = _load(data).column("text").to_pylist()
    h = MinHasher(bands=FINEWEB_BANDS, rows=FINEWEB_ROWS)
    t0 = time.perf_counter()
    h.band_keys(h.signatures(texts))
    return {"docs": len(texts), "seconds": time.perf_counter() - t0}


def _naive_minhashes(texts):
    from datasketch import MinHash

    from pipelines.curation.minhash import normalize

    out = []
    for text in texts:
        m = MinHash(num_perm=FINEWEB_BANDS * FINEWEB_ROWS, seed=1)
        words = normalize(text).split()
        for i in range(max(1, len(words) - 4)):
            m.update(" ".join(words[i:i + 5]).encode("utf-8"))
        out.append(m)
    return out


def case_sig_datasketch(data: Path) -> dict:
    texts = _load(data).column("text").to_pylist()
    t0 = time.perf_counter()
    _naive_minhashes(texts)
    return {"docs": len(texts), "seconds": time.perf_counter() - t0}


def _datatrove_docs(table: pa.Table):
    """datatrove Documents; also adapts datatrove 0.10.1 to xxhash 4.x, which no longer hashes str."""
    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash
    from datatrove.data import Document

    dt_xxhash.xxhash32 = lambda d: xxhash.xxh32_intdigest(d.encode() if isinstance(d, str) else d)
    dt_xxhash.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)

    return [Document(text=t, id=i) for t, i in zip(table.column("text").to_pylist(), table.column("id").to_pylist())]


def case_sig_datatrove(data: Path) -> dict:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    docs = _datatrove_docs(_load(data))
    with tempfile.TemporaryDirectory() as tmp:
        step = MinhashDedupSignature(output_folder=f"{tmp}/sigs", config=MinhashConfig(num_buckets=FINEWEB_BANDS,
                                                                                       hashes_per_bucket=FINEWEB_ROWS))
        t0 = time.perf_counter()
        step.run(iter(docs), rank=0, world_size=1)
        return {"docs": len(docs), "seconds": time.perf_counter() - t0}


def case_dedup_ours(data: Path) -> dict:
    from pipelines.curation.dedup import DedupConfig, DedupIndex

    table = _load(data)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = DedupIndex(Path(tmp)).deduplicate("bench", table.column("id").to_pylist(), table.column("text").to_pylist(),
                                                DedupConfig(bands=FINEWEB_BANDS, rows=FINEWEB_ROWS))
        return {"docs": table.num_rows, "seconds": time.perf_counter() - t0, "removed": int((~res.keep).sum())}


def case_dedup_datasketch(data: Path) -> dict:
    from datasketch import MinHashLSH

    table = _load(data)
    texts = table.column("text").to_pylist()
    t0 = time.perf_counter()
    hashes = _naive_minhashes(texts)
    lsh = MinHashLSH(num_perm=FINEWEB_BANDS * FINEWEB_ROWS, params=(FINEWEB_BANDS, FINEWEB_ROWS))
    removed = 0
    for i, m in enumerate(hashes):
        if lsh.query(m):
            removed += 1
        lsh.insert(str(i), m)
    return {"docs": len(texts), "seconds": time.perf_counter() - t0, "removed": removed}


def case_dedup_datatrove(data: Path) -> dict:
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )

    docs = _datatrove_docs(_load(data))
    cfg = MinhashConfig(num_buckets=FINEWEB_BANDS, hashes_per_bucket=FINEWEB_ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        MinhashDedupSignature(output_folder=f"{tmp}/sigs", config=cfg).run(iter(docs), rank=0, world_size=1)
        for b in range(FINEWEB_BANDS):  # one task per bucket, run one after another on this core
            MinhashDedupBuckets(input_folder=f"{tmp}/sigs", output_folder=f"{tmp}/buckets", config=cfg).run(
                None, rank=b, world_size=FINEWEB_BANDS)
        MinhashDedupCluster(input_folder=f"{tmp}/buckets", output_folder=f"{tmp}/remove_ids", config=cfg).run(None, 0, 1)
        kept = sum(1 for _ in MinhashDedupFilter(input_folder=f"{tmp}/remove_ids").run(iter(docs), rank=0, world_size=1))
        return {"docs": len(docs), "seconds": time.perf_counter() - t0, "removed": len(docs) - kept}


def case_curation_ours(data: Path) -> dict:
    from pipelines.contract import run_stage
    from pipelines.curation import stages
    from pipelines.curation.taggers import TAGGERS
    from pipelines.lake import Lake

    table = _load(data)
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(Path(tmp))
        with lake.writer("deduped", "bench", stages.DEDUPED_SCHEMA) as w:  # the filter input, as dedup writes it
            w.write_table(table.append_column("dup_cluster", table.column("id")).cast(stages.DEDUPED_SCHEMA))
            h = w.commit()
        lake.write_manifest("deduped", "bench", {"content_hash": h})
        t0 = time.perf_counter()
        for tagger in TAGGERS:  # one core, like the other cases
            workers = {"workers": 1} if "workers" in tagger.tag_config.__dataclass_fields__ else {}
            run_stage(stages.tagger_stage(tagger), lake, "bench", **workers)
        m = run_stage(stages.curated_stage(), lake, "bench")
        return {"docs": table.num_rows, "seconds": time.perf_counter() - t0, "kept": m["rows"]}


def case_curation_datatrove(data: Path) -> dict:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from fasttext.FastText import _FastText

    from pipelines.curation.langid import resolve_model_path

    docs = _datatrove_docs(_load(data))
    lang = LanguageFilter(languages=["en", "de", "fr", "es"], language_threshold=0.65)
    lang.model._model = _FastText(str(resolve_model_path()))  # the same offline lid.176 model, no download
    steps = [lang, GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(filter_no_terminal_punct=False),
             FineWebQualityFilter(), PIIFormatter()]
    t0 = time.perf_counter()
    stream = iter(docs)
    for step in steps:
        stream = step.run(stream, rank=0, world_size=1)
    kept = sum(1 for _ in stream)
    return {"docs": len(docs), "seconds": time.perf_counter() - t0, "kept": kept}


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def _run_case(name: str, data: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.curation_bench", "--case", name, "--data", str(data)],
                         capture_output=True, text=True, env={"CURATION_WORKERS": "1", "OMP_NUM_THREADS": "1",
                                                               "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    if out.returncode:
        raise RuntimeError(f"case {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare(data: Path, pages: int, files: int) -> int:
    from pipelines.ingest import ingest_crawl_file
    from pipelines.lake import Lake
    from pipelines.sample import generate_sample

    generate_sample(data / "sample", seed=5, n_files=files, pages_per_file=pages)
    lake = Lake(data / "lake")
    crawl = data / "sample" / "crawl"
    tables = []
    for f in sorted(crawl.iterdir()):
        ingest_crawl_file(lake, crawl, f.name)
        tables.append(pq.read_table(lake.data_path("raw_crawl", f.name)))
    table = pa.concat_tables(tables)
    pq.write_table(table, data / "docs.parquet")
    return table.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--case", choices=sorted(CASES))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/curation.json"))
    args = parser.parse_args()
    if args.case:  # child process: run one case, print JSON
        res = CASES[args.case](args.data)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(res))
        return

    from pipelines.curation.dedup import DedupConfig
    from pipelines.sample.dedup_eval import labeled_pairs, lsh_accuracy

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        n = prepare(data, args.pages, args.files)
        print(f"{n} documents from {args.files} sample WARC files (+ WET), one core per case\n")
        results = {name: _run_case(name, data) for name in CASES}
    groups = {"signatures (+ band keys)": ["sig_ours", "sig_datasketch", "sig_datatrove"],
              "dedup end to end": ["dedup_ours", "dedup_datasketch", "dedup_datatrove"],
              "curation filters": ["curation_ours", "curation_datatrove"]}
    for title, names in groups.items():
        base = results[names[0]]["seconds"]
        print(f"{title}")
        print(f"  {'case':<22} {'docs/s/core':>12} {'peak MB':>8} {'ours is x faster':>17}  notes")
        for name in names:
            r = results[name]
            note = ", ".join(f"{k}={r[k]}" for k in ("removed", "kept") if k in r)
            print(f"  {name:<22} {r['docs'] / r['seconds']:>12.1f} {r['peak_rss_mb']:>8.0f} {r['seconds'] / base:>17.2f}  {note}")
        print()
    accuracy = {}
    pairs = labeled_pairs(600, seed=9)
    for label, cfg in (("threshold 0.8 (9x12, default)", DedupConfig()), ("FineWeb 14x8", DedupConfig(bands=14, rows=8))):
        accuracy[label] = acc = lsh_accuracy(pairs, cfg)
        print(f"near-dup accuracy, {label}: precision {acc['precision']:.3f} recall {acc['recall']:.3f} "
              f"recall(J>=0.9) {acc['recall_at_0.9']:.3f}; detected by Jaccard bin: "
              + ", ".join(f"{k}: {v['detected']:.2f}" for k, v in acc["bins"].items() if v["detected"] is not None))
    from pipelines.sample.pii_eval import evaluate, labeled_set

    pii = evaluate(labeled_set(seed=2024))
    print(f"PII on a fresh labeled set: recall {pii['recall']}, false-positive rate {pii['false_positive_rate']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"documents": n, "cases": results, "accuracy": accuracy, "pii": pii}, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
