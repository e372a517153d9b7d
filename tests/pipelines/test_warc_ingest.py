import collections
import gzip
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.ingest import ingest_crawl_file
from pipelines.ingest.warc import IngestStats, ingest_warc
from pipelines.sample.warc_writer import WarcFileWriter, http_response

KEPT_KINDS = {"article", "exact_dup", "near_dup", "pii", "toxic", "spam", "encoding"}


def _ingest(path: Path):
    stats = IngestStats()
    rows = [r for batch in ingest_warc(path, path.name, stats=stats, batch_size=7) for r in batch]
    return rows, stats


def _warc_files(sample_dir):
    return sorted(p for p in (sample_dir / "crawl").iterdir() if ".wet" not in p.name)


def test_every_planted_record_ends_in_the_right_outcome(sample_dir, truth):
    for path in _warc_files(sample_dir):
        rows, stats = _ingest(path)
        planted = [t for t in truth.values() if t["file"] == path.name]
        kinds = collections.Counter(t["kind"] for t in planted)
        kept_urls = {r["url"] for r in rows}
        assert kept_urls == {t["url"] for t in planted if t["kind"] in KEPT_KINDS}, path.name
        assert stats.outcomes["kept"] == len(rows)
        assert stats.outcomes["unsupported_content_type"] == kinds["non_html"]
        assert stats.outcomes["http_404"] + stats.outcomes["http_301"] == kinds["http_error"]
        assert stats.outcomes["undecodable"] + stats.outcomes["binary_content"] == kinds["undecodable"]
        assert stats.outcomes["corrupt_record"] == kinds["corrupt"]
        assert stats.other_records["request"] == len(planted) and stats.other_records["warcinfo"] == 1
        assert stats.records == len(planted)


def test_main_text_is_extracted_without_boilerplate(sample_dir, truth):
    rows = [r for p in _warc_files(sample_dir) for r in _ingest(p)[0]]
    articles = [r for r in rows if truth[r["url"]]["kind"] in ("article", "pii", "near_dup", "encoding")]
    exact = sum(r["text"] == truth[r["url"]]["main_text"] for r in articles)
    assert exact / len(articles) >= 0.98
    for r in rows:
        assert "cookies" not in r["text"] and "Copyright 2024" not in r["text"], r["url"]
        assert r["crawl"] == "CC-MAIN-SAMPLE-2024-10" and r["date"].year == 2024
        assert r["title"]


def test_legacy_encodings_are_decoded(sample_dir, truth):
    rows = [r for p in _warc_files(sample_dir) for r in _ingest(p)[0]]
    encoded = [r for r in rows if truth[r["url"]]["kind"] == "encoding"]
    assert len(encoded) == 5 * len(_warc_files(sample_dir))
    for r in encoded:
        t = truth[r["url"]]
        assert r["text"] == t["main_text"], (t["charset"], r["charset"])
        assert r["charset"].replace("iso8859", "iso-8859").replace("cp", "windows-") == t["charset"].replace("shift_jis", "shift_jis")


def test_wet_records_share_ids_with_their_warc_responses(sample_dir, truth):
    wet = next(p for p in (sample_dir / "crawl").iterdir() if ".wet" in p.name)
    wet_rows, stats = _ingest(wet)
    assert wet_rows and stats.outcomes == {"kept": len(wet_rows)}
    warc_ids = {r["url"]: r["id"] for p in _warc_files(sample_dir) for r in _ingest(p)[0]}
    for r in wet_rows:
        assert r["text"] == f"{truth[r['url']]['title']}\n{truth[r['url']]['main_text']}"
        assert r["id"] == warc_ids[r["url"]]


def test_truncated_file_keeps_records_before_the_cut(sample_dir, tmp_path):
    src = _warc_files(sample_dir)[1]  # a gzip file without the planted corrupt record
    full, _ = _ingest(src)
    data = src.read_bytes()
    cut = tmp_path / src.name
    cut.write_bytes(data[: int(len(data) * 0.6)])
    rows, stats = _ingest(cut)
    assert stats.outcomes["truncated"] == 1
    assert 0 < len(rows) < len(full)
    assert [r["id"] for r in rows] == [r["id"] for r in full[: len(rows)]]


@pytest.mark.parametrize("payload", [b"", b"this is not a WARC file at all\n" * 50, bytes(random.Random(1).getrandbits(8) for _ in range(5000)),
                                     gzip.compress(b"not a warc either") + b"\x1f\x8b\x08garbage"])
def test_garbage_files_do_not_raise(tmp_path, payload):
    path = tmp_path / "junk.warc.gz"
    path.write_bytes(payload)
    rows, stats = _ingest(path)
    assert rows == []


def test_flipped_bytes_in_plain_warc_cost_one_record(sample_dir, tmp_path):
    src = next(p for p in _warc_files(sample_dir) if p.suffix == ".warc")
    full, _ = _ingest(src)
    data = bytearray(src.read_bytes())
    # damage the WARC header line of a response record in the middle of the file
    pos = data.find(b"WARC-Type: response", len(data) // 2)
    data[pos - 11 : pos - 2] = b"XXXX/9.9\r"
    bad = tmp_path / src.name
    bad.write_bytes(bytes(data))
    rows, stats = _ingest(bad)
    assert len(full) - 1 <= len(rows) <= len(full)
    assert stats.outcomes["corrupt_record"] + stats.outcomes["truncated"] >= (len(full) - len(rows))


def test_chunked_and_gzip_http_payloads_are_decoded(tmp_path):
    html = b"<html><head><title>T</title></head><body><article><p>Chunked and compressed body text that should survive decoding intact.</p></article></body></html>"
    gz = gzip.compress(html, mtime=0)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(gz[i:i + 50]), gz[i:i + 50]) for i in range(0, len(gz), 50)) + b"0\r\n\r\n"
    block = http_response(chunked, "text/html; charset=utf-8", extra={"Content-Encoding": "gzip", "Transfer-Encoding": "chunked"})
    block = block.replace(f"Content-Length: {len(chunked)}\r\n".encode(), b"")
    rng = random.Random(0)
    w = WarcFileWriter(tmp_path / "chunked.warc.gz", compress=True, rng_uuid=lambda: rng.getrandbits(128))
    w.write("response", block, {"WARC-Date": "2024-01-01T00:00:00Z", "WARC-Target-URI": "https://example.com/x",
                                "Content-Type": "application/http; msgtype=response"})
    w.close()
    rows, stats = _ingest(tmp_path / "chunked.warc.gz")
    assert stats.outcomes == {"kept": 1}
    assert rows[0]["text"] == "Chunked and compressed body text that should survive decoding intact."


def test_reingest_is_deterministic_and_ids_are_stable(sample_dir, tmp_path):
    from pipelines.lake import Lake

    key = _warc_files(sample_dir)[0].name
    m1 = ingest_crawl_file(Lake(tmp_path / "a"), sample_dir / "crawl", key)
    m2 = ingest_crawl_file(Lake(tmp_path / "b"), sample_dir / "crawl", key)
    assert m1["content_hash"] == m2["content_hash"]
    ids = pq.read_table(m1["path"], columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == m1["rows"]


def test_missing_crawl_file_names_the_fix(sample_dir, lake):
    with pytest.raises(FileNotFoundError, match="CRAWL_DIR"):
        ingest_crawl_file(lake, sample_dir / "crawl", "nope.warc.gz")


def test_origin_offset_points_at_the_record(sample_dir):
    from fastwarc.warc import ArchiveIterator

    path = _warc_files(sample_dir)[0]  # holds the corrupt record: offsets after the resync count too
    rows, _ = _ingest(path)
    with open(path, "rb") as fh:
        for r in rows[::5] + rows[-3:]:
            fh.seek(r["origin_offset"])
            rec = next(iter(ArchiveIterator(fh)))
            assert rec.headers.get("WARC-Target-URI") == r["url"]
            assert rec.record_id == r["origin_id"]


def test_progress_is_reported_on_long_files(sample_dir):
    from pipelines.ingest import warc

    messages = []
    path = _warc_files(sample_dir)[0]
    rows = list(warc._with_progress(iter(range(5)), IngestStats(), messages.append, every_s=0.0))
    assert rows == list(range(5)) and len(messages) == 5 and "records read" in messages[0]
    batches = list(ingest_warc(path, path.name, progress=messages.append))
    assert batches
