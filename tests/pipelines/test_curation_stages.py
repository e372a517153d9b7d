import collections

import pyarrow.parquet as pq
import pytest

from pipelines.contract import run_stage
from pipelines.curation import stages
from pipelines.curation.pii import find_pii
from pipelines.ingest import ingest_crawl_file


def _run(lake, crawl_dir, key, **filter_overrides):
    ingest_crawl_file(lake, crawl_dir, key)
    *tagging, curate = stages.curation_stages()
    for stage in tagging:
        run_stage(stage, lake, key)
    return run_stage(curate, lake, key, **filter_overrides)


@pytest.fixture(scope="module")
def curated(sample_dir, tmp_path_factory):
    from pipelines.lake import Lake

    lake = Lake(tmp_path_factory.mktemp("lake"))
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)
    manifests = {k: _run(lake, sample_dir / "crawl", k) for k in keys}
    return lake, manifests


def test_planted_pages_are_handled_as_intended(curated, truth):
    lake, _ = curated
    con = lake.connect()
    kept = dict(con.execute("SELECT url, text FROM curated_web").fetchall())
    ledger = {u: (s, r) for u, s, r in con.execute("SELECT url, stage, reason FROM rejection_ledger").fetchall()}
    raw = {u for (u,) in con.execute("SELECT url FROM raw_crawl").fetchall()}
    assert raw == set(kept) | set(ledger) and not set(kept) & set(ledger)  # every page: kept or has a reason
    for url in raw:
        t = truth[url]
        if t["kind"] == "spam":
            assert url in ledger, url
        if t["kind"] == "toxic" and t["toxic_lines"] > 1:
            assert ledger.get(url, ("", ""))[1].startswith(("toxicity:", "exact_duplicate", "near_duplicate")), url
        if t["kind"] == "toxic" and t["toxic_lines"] == 1 and url in kept:
            assert len(kept[url].split("\n")) == len(t["main_text"].split("\n")) - 1
        if t["kind"] == "pii" and url in kept:
            text = kept[url]
            assert not find_pii(text) and all(p["value"] not in text for p in t["pii"])
            assert "<EMAIL>" in text and "<CREDIT_CARD>" in text and "978-3-16-148410-0" in text
        if t["kind"] in ("exact_dup", "near_dup") and url in ledger and ledger[url][0] == "dedup":
            assert ledger[url][1] in ("exact_duplicate", "near_duplicate")
    # every planted cluster keeps at most one copy
    roots = collections.Counter()
    for url in kept:
        t = truth[url]
        has_copies = any(x.get("dup_of") == url and x["kind"] == "exact_dup" for x in truth.values())
        if t["kind"] == "exact_dup" or (t["kind"] == "article" and has_copies):
            roots[t["dup_of"] or url] += 1
    assert all(v == 1 for v in roots.values())
    langs = {lang for (lang,) in con.execute("SELECT DISTINCT lang FROM curated_web").fetchall()}
    assert langs == {"en", "de", "fr", "es"}


def test_ledger_rows_carry_stage_reason_and_score(curated):
    lake, manifests = curated
    con = lake.connect()
    rows = con.execute("SELECT stage, reason, score, dup_of FROM rejection_ledger").fetchall()
    assert {s for s, *_ in rows} >= {"dedup", "language", "quality", "toxicity"}
    for stage, reason, _score, dup_of in rows:
        assert reason and (stage != "dedup" or dup_of)
    total_removed = sum(m["rows_in"] - m["rows"] for m in manifests.values())
    assert con.execute("SELECT count(*) FROM rejection_ledger WHERE stage != 'dedup'").fetchone()[0] == total_removed


def test_rethresholding_reruns_only_the_filter(curated):
    lake, manifests = curated
    key = next(iter(manifests))
    tags_before = {a: lake.read_manifest(a, key)["content_hash"] for a in ("language_id", "quality_tags")}
    strict = run_stage(stages.curated_stage(), lake, key, language_id={"keep_languages": ("en",)})
    assert set(strict["languages_kept"]) == {"en"} and strict["rows"] < manifests[key]["rows"]
    assert {a: lake.read_manifest(a, key)["content_hash"] for a in tags_before} == tags_before
    run_stage(stages.curated_stage(), lake, key)  # restore


def test_empty_and_unicode_partitions(tmp_path):
    from pipelines.lake import Lake
    from pipelines.sample.warc_writer import WarcFileWriter, http_response

    lake = Lake(tmp_path / "lake")
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    import random

    rng = random.Random(0)
    w = WarcFileWriter(crawl / "empty.warc.gz", compress=True, rng_uuid=lambda: rng.getrandbits(128))
    w.write("warcinfo", b"isPartOf: X\r\n", {"WARC-Date": "2024-01-01T00:00:00Z", "Content-Type": "application/warc-fields"})
    w.close()
    m = _run(lake, crawl, "empty.warc.gz")
    assert m["rows_in"] == 0 and m["rows"] == 0
    w = WarcFileWriter(crawl / "uni.warc.gz", compress=True, rng_uuid=lambda: rng.getrandbits(128))
    sentence = "Ünïcödé façade naïve résumé — 😀 emoji and 中文 text with Ωmega. "
    body = ("<html><body><article><p>" + sentence * 20 + "</p></article></body></html>").encode()
    w.write("response", http_response(body, "text/html; charset=utf-8"), {"WARC-Date": "2024-01-01T00:00:00Z",
            "WARC-Target-URI": "https://example.com/u", "Content-Type": "application/http; msgtype=response"})
    w.close()
    m = _run(lake, crawl, "uni.warc.gz", language_id={"keep_languages": ()})
    assert m["rows_in"] == 1
    assert pq.read_table(lake.data_path("quality_tags", "uni.warc.gz")).num_rows == 1


def test_filter_refuses_stale_tags(curated, sample_dir):
    lake, manifests = curated
    key = next(iter(manifests))
    other = list(manifests)[1]
    import shutil

    backup = lake.data_path("pii_tags", key).read_bytes()
    shutil.copy(lake.data_path("pii_tags", other), lake.data_path("pii_tags", key))
    with pytest.raises(ValueError, match="re-materialize pii_tags"):
        run_stage(stages.curated_stage(), lake, key)
    lake.data_path("pii_tags", key).write_bytes(backup)
