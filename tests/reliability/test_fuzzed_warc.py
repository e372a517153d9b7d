import random

import pytest

from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.sample.fuzz import build_warc, fuzz


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    path = root / "clean.warc.gz"
    spans = build_warc(path, n_pages=60, seed=1)
    return path, spans


@pytest.mark.parametrize("seed", range(12))
def test_fuzzed_files_never_crash_and_lose_no_good_record(clean, tmp_path, seed):
    src, spans = clean
    rng = random.Random(seed)
    fuzzed = fuzz(src, spans, tmp_path / f"f{seed}.warc.gz", rng, n_flips=rng.randint(1, 6), truncate=seed % 3 == 0)
    stats = IngestStats()
    rows = [r for batch in ingest_warc(fuzzed.path, fuzzed.path.name, stats=stats) for r in batch]
    urls = {r["url"] for r in rows}
    assert fuzzed.good_urls <= urls, (fuzzed.faults, sorted(fuzzed.good_urls - urls)[:5])
    assert urls <= {u for _, _, u in spans}  # nothing invented


def test_oversized_records_are_skipped_with_a_reason(tmp_path):
    path = tmp_path / "huge.warc.gz"
    build_warc(path, n_pages=9, seed=2, huge_every=3, huge_bytes=3 << 20)
    stats = IngestStats()
    rows = [r for batch in ingest_warc(path, path.name, stats=stats, max_record_bytes=1 << 20) for r in batch]
    assert len(rows) == 6 and stats.outcomes["too_large"] == 3
