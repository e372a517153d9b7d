import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.ingest import ingest_source_dir
from pipelines.ingest.sources import ingest_source
from pipelines.ingest.warc import IngestStats


def test_all_formats_and_bad_lines_are_counted(tmp_path):
    d = tmp_path / "qa"
    d.mkdir()
    (d / "a.jsonl").write_text('{"id": 1, "text": "one"}\n\n{"text": "two", "url": "u"}\n{broken\n[1, 2]\n{"text": ""}\n{"text": 5}\n')
    (d / "b.jsonl.gz").write_bytes(gzip.compress(b'{"id": "g", "text": "three"}\n'))
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["four", "five"]}), d / "c.parquet")
    (d / "d.parquet").write_bytes(b"PAR1 not really")
    (d / "e.jsonl.gz").write_bytes(b"not gzip")
    stats = IngestStats()
    rows = [r for b in ingest_source(d, "qa", stats=stats) for r in b]
    assert [r["text"] for r in rows] == ["one", "two", "three", "four", "five"]
    assert stats.outcomes == {"kept": 5, "malformed_json": 1, "not_an_object": 1, "missing_text": 2, "unreadable_file": 2}
    assert rows[1]["origin_id"] == "a.jsonl:3" and rows[0]["origin_id"] == "1"
    assert any("a.jsonl:4" in e for e in stats.errors)


def test_sample_sources_ingest_into_the_lake(sample_dir, lake):
    counts = {}
    for kind in ("books", "code", "wiki", "arxiv", "qa"):
        m = ingest_source_dir(lake, sample_dir / "sources", kind)
        counts[kind] = m["rows"]
        assert m["outcomes"].get("kept") == m["rows"] > 0
    assert counts["wiki"] == 12
    qa = lake.read_manifest("source_qa")
    assert qa["outcomes"]["malformed_json"] == 1  # planted by the generator
    assert lake.connect().execute("SELECT count(DISTINCT source) FROM source_books").fetchone()[0] == 1


def test_missing_source_dir_gives_empty_output(tmp_path, lake):
    m = ingest_source_dir(lake, tmp_path, "books")
    assert m["rows"] == 0 and json.loads(lake.manifest_path("source_books").read_text())["rows"] == 0
