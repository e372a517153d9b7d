"""Reliability figures: faults and bad input injected, what ingest recovers, memory on bombs, kills.

1. WARC faults: for each round, truncation and/or 1-8 flipped bits in a 60-record gzip WARC;
   a record is "good" when no fault touched its gzip member. Lost = good records not
   recovered; crashes = ingest raising. Target: 0 and 0.
2. Bad input: source files with non-UTF-8 bytes, non-string fields and reused ids; a non-WARC
   file. Lost = valid records not in the lake.
3. Compression bombs (HTTP Content-Encoding, gzip member, whole file), each inflating to
   `--bomb-gib` GiB: peak RSS growth of the ingest process, bound 200 MB.
4. Kills: a writer SIGKILLed mid-write (previous output intact, rerun identical); a directory
   swap killed between its renames (restored on the next start); a run whose process died
   (its pool slot freed by the reaper sensor, then by `free_slots_after_run_end_seconds`).

    python -m benchmarks.reliability_bench [--rounds 300] [--bomb-gib 1]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.ingest import ingest_crawl_file, ingest_source_dir
from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.lake import Lake, atomic_directory, recover_swaps
from pipelines.sample.bombs import write_bomb
from pipelines.sample.fuzz import build_warc, fuzz

RSS_BOUND_MB = 200


def warc_faults(rounds: int, tmp: Path) -> dict:
    totals = {"files": 0, "faults": 0, "good_records": 0, "recovered_good": 0, "lost": 0, "crashes": 0, "invented": 0}
    src = tmp / "clean.warc.gz"
    spans = build_warc(src, n_pages=60, seed=0)
    all_urls = {u for _, _, u in spans}
    for r in range(rounds):
        rng = random.Random(r)
        f = fuzz(src, spans, tmp / "f.warc.gz", rng, n_flips=rng.randint(0, 8), truncate=rng.random() < 0.3)
        totals["files"] += 1
        totals["faults"] += len(f.faults)
        totals["good_records"] += len(f.good_urls)
        try:
            urls = {row["url"] for b in ingest_warc(f.path, f.path.name, stats=IngestStats()) for row in b}
        except Exception:  # counted, not raised: this is what the benchmark measures
            totals["crashes"] += 1
            continue
        totals["recovered_good"] += len(f.good_urls & urls)
        totals["lost"] += len(f.good_urls - urls)
        totals["invented"] += len(urls - all_urls)
    return totals


def bad_input(tmp: Path, n: int = 2000) -> dict:
    """Sources where every 10th line has a latin-1 byte, every 7th a non-string title, every 5th a reused id."""
    books = tmp / "sources" / "books"
    books.mkdir(parents=True)
    lines, valid = [], 0
    for i in range(n):
        doc_id = i - 1 if i % 5 == 0 and i else i
        title = i if i % 7 == 0 else f"t{i}"
        line = json.dumps({"id": doc_id, "title": title, "text": f"document {i} " * 5}).encode()
        if i % 10 == 3:
            line = line.replace(b"document", b"docum\xe9nt", 1)
        else:
            valid += 1
        lines.append(line)
    (books / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    lake = Lake(tmp / "lake")
    m = ingest_source_dir(lake, tmp / "sources", "books")
    crawl = tmp / "crawl"
    crawl.mkdir()
    (crawl / "notes.warc.gz").write_bytes(b"not a crawl file\n" * 100)
    not_warc = ingest_crawl_file(lake, crawl, "notes.warc.gz")
    return {"source_lines": n, "bad_lines_injected": n - valid, "valid_records": valid, "recovered": m["rows"],
            "lost": valid - m["rows"], "repaired": m["warnings"], "skipped": {k: v for k, v in m["outcomes"].items() if k != "kept"},
            "non_warc_outcome": not_warc["outcomes"]}


BOMB_INGEST = """
import json, resource, sys, time
from pathlib import Path
from pipelines.ingest import ingest_crawl_file
from pipelines.lake import Lake
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
m = ingest_crawl_file(Lake(sys.argv[1]), Path(sys.argv[2]).parent, Path(sys.argv[2]).name)
print(json.dumps({"rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "seconds": time.perf_counter() - t0, "documents": m["rows"], "outcomes": m["outcomes"]}))
"""


def bombs(tmp: Path, gib: float) -> dict:
    out = {}
    for kind in ("http", "member", "file"):
        crawl = tmp / f"bomb-{kind}"
        crawl.mkdir()
        path = write_bomb(crawl / f"{kind}.warc.gz", kind, int(gib * (1 << 30)))
        res = json.loads(subprocess.run([sys.executable, "-c", BOMB_INGEST, str(tmp / f"lake-{kind}"), str(path)],
                                        capture_output=True, text=True, check=True).stdout)
        out[kind] = {"file_kb": round(path.stat().st_size / 1024), "inflates_to_gib": gib, **res,
                     "within_bound": res["rss_growth_mb"] < RSS_BOUND_MB}
    return out


SLOW_WRITER = """
import sys, time
import pyarrow as pa
from pipelines.lake import Lake
with Lake(sys.argv[1]).writer("raw_crawl", "p", pa.schema([("id", pa.string())])) as w:
    for i in range(100_000):
        w.write_rows([{"id": str(i)}])
        time.sleep(0.001)
    w.commit()
"""


def kills(tmp: Path, rounds: int = 5) -> dict:
    import pyarrow as pa

    lake = Lake(tmp / "kill-lake")
    with lake.writer("raw_crawl", "p", pa.schema([("id", pa.string())])) as w:
        w.write_rows([{"id": "committed"}])
        w.commit()
    before = lake.data_path("raw_crawl", "p").read_bytes()
    intact = 0
    for r in range(rounds):
        proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(lake.root)])
        time.sleep(0.5 + 0.2 * r)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        intact += lake.data_path("raw_crawl", "p").read_bytes() == before
    swaps_restored = 0
    for r in range(rounds):
        final = tmp / "swaps" / f"d{r}"
        with atomic_directory(final) as d:
            (d / "v").write_text("1")
        old = final.parent / f".{final.name}.killed.old"
        final.rename(old)  # what a kill between the two renames of a swap leaves behind
        swaps_restored += recover_swaps(final.parent) == [final.name] and (final / "v").read_text() == "1"
    return {"writer_kills": rounds, "previous_output_intact": intact, "swap_kills": rounds, "swaps_restored": swaps_restored,
            **dead_run_slot(tmp)}


def dead_run_slot(tmp: Path) -> dict:
    """Seconds from a run's death to its pool slot being free again (one reaper tick)."""
    import dagster as dg
    import yaml
    from dagster._core.events import DagsterEvent  # the event a run worker writes at start

    from orchestration.defs.sensors import dead_run_reaper

    settings = yaml.safe_load(Path("dagster.yaml").read_text())
    with dg.instance_for_test(overrides={"concurrency": settings["concurrency"]}) as instance:
        @dg.asset(pool="training")
        def model():
            ...

        run = instance.create_run_for_job(dg.Definitions(assets=[model]).resolve_implicit_global_asset_job_def())
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        instance.report_dagster_event(DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value,
                                                   job_name=run.job_name, pid=worker.pid), run.run_id)
        instance.event_log_storage.set_concurrency_slots("training", 1)
        instance.event_log_storage.claim_concurrency_slot("training", run.run_id, "model")
        worker.kill()
        worker.wait()
        t0 = time.perf_counter()
        dead_run_reaper(dg.build_sensor_context(instance=instance))
        freed = not instance.event_log_storage.get_concurrency_info("training").claimed_slots
        return {"dead_run_slot_freed": freed, "seconds_to_free_after_tick": round(time.perf_counter() - t0, 3),
                "reaper_interval_s": dead_run_reaper.minimum_interval_seconds,
                "free_slots_after_run_end_seconds": settings["run_monitoring"]["free_slots_after_run_end_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--bomb-gib", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reliability.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {"warc_faults": warc_faults(args.rounds, tmp),
                   "bad_input": bad_input(tmp / "bad"), "bombs": bombs(tmp, args.bomb_gib), "kills": kills(tmp)}
    for section, values in results.items():
        print(f"{section}:")
        for k, v in values.items():
            print(f"  {k:>34}: {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
