"""Reliability figures: inject faults into WARC files and count what ingest recovers.

For each round: truncation and/or 1-8 flipped bits in a 60-record gzip WARC; a record
is "good" when no fault touched its gzip member. Data lost = good records not
recovered; crashes = ingest raising. Target: 0 and 0.

    python -m benchmarks.reliability_bench [--rounds 300]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.sample.fuzz import build_warc, fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reliability.json"))
    args = parser.parse_args()
    totals = {"files": 0, "faults": 0, "good_records": 0, "recovered_good": 0, "lost": 0, "crashes": 0, "invented": 0}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clean.warc.gz"
        spans = build_warc(src, n_pages=60, seed=0)
        all_urls = {u for _, _, u in spans}
        for r in range(args.rounds):
            rng = random.Random(r)
            f = fuzz(src, spans, Path(tmp) / "f.warc.gz", rng, n_flips=rng.randint(0, 8), truncate=rng.random() < 0.3)
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
    for k, v in totals.items():
        print(f"{k:>15}: {v}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(totals, indent=2))


if __name__ == "__main__":
    main()
