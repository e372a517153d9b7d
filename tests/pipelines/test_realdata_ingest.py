"""Ingest accounting on real WARC files from six producers, against warcio as an independent reader.

Reads $REALDATA_DIR/warc (default ../shared/realdata; see its README); skipped when absent.
"""

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipelines.ingest import ingest_crawl_file
from pipelines.lake import Lake
from pipelines.settings import setting_path

WARC_DIR = setting_path("REALDATA_DIR") / "warc"
FILES = sorted(p.name for p in WARC_DIR.glob("*.warc*")) if WARC_DIR.is_dir() else []
pytestmark = pytest.mark.skipif(not FILES, reason=f"no real WARC files in {WARC_DIR} (set REALDATA_DIR)")


def _warcio_view(path):
    """(records warcio reads, URLs of 200 HTML responses with a body, whether warcio stopped on an error)."""
    records, html, failed = 0, set(), False
    with open(path, "rb") as fh:
        try:
            for rec in ArchiveIterator(fh):
                records += 1
                h = rec.http_headers
                if (rec.rec_type == "response" and h and h.get_statuscode() == "200"
                        and "html" in (h.get_header("Content-Type") or "") and rec.content_stream().read().strip()):
                    html.add(rec.rec_headers.get_header("WARC-Target-URI").strip("<>"))
        except Exception:  # warcio gives up on some files; we must still read at least what it read
            failed = True
    return records, html, failed


@pytest.mark.parametrize("name", FILES)
def test_every_record_has_one_outcome_and_no_html_page_is_lost(name, tmp_path):
    records, html, warcio_failed = _warcio_view(WARC_DIR / name)
    manifest = ingest_crawl_file(Lake(tmp_path / "lake"), WARC_DIR, name)
    ours = sum(manifest["outcomes"].values()) + sum(manifest["other_records"].values())
    assert ours >= records if warcio_failed else ours == records, manifest["outcomes"]
    docs = pq.read_table(manifest["path"]).to_pylist()
    urls = {d["url"] for d in docs}
    assert html <= urls, f"HTML pages lost: {sorted(html - urls)}"
    assert all(d["text"].strip() for d in docs)
    assert not [u for u in urls if u.startswith("<") or u.split("://")[0] not in ("http", "https") or u.endswith("/robots.txt")]
    assert not [d["url"] for d in docs if "\ufeff" in d["text"]]


EXTRACTION_DIR = setting_path("REALDATA_DIR") / "extraction"


@pytest.mark.skipif(not (EXTRACTION_DIR / "ground-truth.json").exists(), reason=f"no {EXTRACTION_DIR} (set REALDATA_DIR)")
def test_default_extractor_keeps_the_article_on_real_pages():
    """Bag-of-words F1 against the benchmark's articleBody, mean over pages (speed is in benchmarks/ingest_bench.py)."""
    from benchmarks.ingest_bench import real_page_scores

    scores = real_page_scores(EXTRACTION_DIR)
    assert sum(f1 for _, _, f1 in scores) / len(scores) >= 0.95
