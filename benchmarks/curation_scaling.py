"""Crawl-to-curated over N generated crawl partitions (N = 4, 16, 64) on each engine: the local
process pool, and a local Ray cluster with 1 and with 2 worker CPUs. Every stage runs over all N
partitions as one backfill run does (`pipelines.engine.run_partitions`: ingest, batch dedup into an
empty index, each tagger, the filter); the curated files and ledgers must be byte-identical across
engines, and the benchmark says so. Each engine first curates the smallest set untimed (Ray starts
its workers; models load): a forked pool still loads the taggers' models in every run, Ray's
long-lived workers keep them.

    python -m benchmarks.curation_scaling [--sizes 4,16,64] [--pages 100]

Incremental dedup's per-partition time against the index size is `benchmarks.dedup_scaling`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from pipelines.contract import Inputs, StageContext, config_from_dict
from pipelines.curation.stages import curation_stages
from pipelines.engine import Engine, EngineConfig, local_ray_cluster, run_partitions
from pipelines.ingest import RAW_CRAWL
from pipelines.lake import Lake
from pipelines.sample import generate_sample
from serving.process import free_port

COMPARED = ("curated_web", "rejection_ledger")


def curate(crawl: Path, lake_root: Path, engine: Engine) -> dict[str, float]:
    """Every stage over every crawl file of `crawl`; seconds per stage (and `total`)."""
    lake = Lake(lake_root)
    inputs = Inputs(crawl_dir=crawl, sources_dir=crawl, chat_dir=crawl)
    keys = sorted(p.name for p in crawl.iterdir() if ".wet" not in p.name)  # the WET twin of file 0 would add a partition
    ctxs = [StageContext(lake, k, inputs, log=lambda m: None, warn=lambda m: None) for k in keys]
    seconds = {}
    t_all = time.perf_counter()
    for stage in (RAW_CRAWL, *curation_stages()):
        t0 = time.perf_counter()
        run_partitions(stage, ctxs, config_from_dict(stage.config, {}), engine)
        seconds[stage.name] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_all
    return seconds


def digest(lake_root: Path) -> str:
    h = hashlib.sha256()
    for asset in COMPARED:
        for p in sorted((lake_root / asset).rglob("*.parquet")):
            h.update(str(p.relative_to(lake_root)).encode() + p.read_bytes())
    return h.hexdigest()[:16]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,16,64")
    parser.add_argument("--pages", type=int, default=100, help="pages per generated crawl file")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="curation-scaling-"))
    try:
        crawls = {}
        for n in sizes:
            generate_sample(tmp / f"sample-{n}", seed=11, n_files=n, pages_per_file=args.pages)
            crawls[n] = tmp / f"sample-{n}" / "crawl"
        results: dict[tuple[str, int], dict] = {}

        def run_all(label: str, engine: Engine) -> None:
            curate(crawls[sizes[0]], tmp / "warm-up", engine)  # untimed: Ray workers start, models load once
            shutil.rmtree(tmp / "warm-up")
            for n in sizes:
                lake_root = tmp / f"lake-{label.replace(' ', '_')}-{n}"
                seconds = curate(crawls[n], lake_root, engine)
                docs = sum(m["rows"] for m in Lake(lake_root).manifests("raw_crawl"))
                results[(label, n)] = {"seconds": seconds, "docs": docs, "digest": digest(lake_root)}
                print(f"{label:>22} N={n:>3}: {seconds['total']:7.1f} s, {docs / seconds['total']:6.0f} docs/s", flush=True)
                shutil.rmtree(lake_root)

        run_all("process pool, 2 procs", Engine(EngineConfig(workers=2)))
        for cpus in (1, 2):
            with local_ray_cluster(num_cpus=cpus, port=free_port()) as address:
                run_all(f"Ray, {cpus} worker CPU{'s' if cpus > 1 else ''}", Engine(EngineConfig(kind="ray", ray_address=address)))
        labels = list(dict.fromkeys(label for label, _ in results))
        print("\n| engine | " + " | ".join(f"N={n} s (docs/s)" for n in sizes) + f" | s per partition, N={sizes[0]} -> N={sizes[-1]} |")
        print("|---|" + "---|" * (len(sizes) + 1))
        for label in labels:
            runs = [results[(label, n)] for n in sizes]
            cells = [f"{r['seconds']['total']:.1f} ({r['docs'] / r['seconds']['total']:.0f})" for r in runs]
            per = [results[(label, n)]["seconds"]["total"] / n for n in (sizes[0], sizes[-1])]
            print(f"| {label} | " + " | ".join(cells) + f" | {per[0]:.2f} -> {per[1]:.2f} |")
        stages = list(results[(labels[0], sizes[-1])]["seconds"])
        print(f"\nN={sizes[-1]}, seconds per stage:\n| stage | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
        for stage in stages:
            print(f"| {stage} | " + " | ".join(f"{results[(label, sizes[-1])]['seconds'][stage]:.1f}" for label in labels) + " |")
        for n in sizes:
            digests = {results[(label, n)]["digest"] for label in labels}
            print(f"N={n}: curated_web + ledger byte-identical across engines: {'yes' if len(digests) == 1 else 'NO ' + str(digests)}")
            print(f"N={n}: documents ingested: {results[(labels[0], n)]['docs']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
