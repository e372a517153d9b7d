import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.lake import partition_dirname
from pipelines.schema import DOCUMENT_SCHEMA, document_id

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def test_failed_write_leaves_nothing_behind(lake):
    target = lake.data_path("stage", "p1")
    with pytest.raises(RuntimeError), lake.writer("stage", "p1", SCHEMA) as w:
        w.write_rows([{"id": "a", "n": 1}])
        raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert [f for f in os.listdir(target.parent) if not f.endswith(".lock")] == []  # the empty lock file stays: see lake.py


def test_failed_rewrite_keeps_the_previous_version(lake):
    with lake.writer("stage", "p1", SCHEMA) as w:
        w.write_rows([{"id": "a", "n": 1}])
        first = w.commit()
    with pytest.raises(RuntimeError), lake.writer("stage", "p1", SCHEMA) as w:
        w.write_rows([{"id": "b", "n": 2}])
        raise RuntimeError
    assert pq.read_table(lake.data_path("stage", "p1")).column("id").to_pylist() == ["a"]
    assert sorted(f for f in os.listdir(lake.partition_dir("stage", "p1")) if not f.endswith(".lock")) == ["part-00000.parquet"]
    assert first


def test_duckdb_views_and_catalog_see_every_partition(lake):
    for key, n in (("a.warc.gz", 2), ("dir/b.warc", 3)):
        with lake.writer("raw_crawl", key, SCHEMA) as w:
            w.write_rows([{"id": f"{key}{i}", "n": i} for i in range(n)])
            w.commit()
    assert lake.connect().execute("SELECT count(*) FROM raw_crawl").fetchone()[0] == 5
    lake.write_catalog()
    con = lake.open_catalog()
    assert con.execute("SELECT sum(n) FROM raw_crawl").fetchone()[0] == 1 + 3


def test_partition_dirnames_are_safe_and_distinct():
    keys = ["a/b.warc.gz", "a_b.warc.gz", "../x", "CC-MAIN-2024-10-00001.warc.gz"]
    names = [partition_dirname(k) for k in keys]
    assert len(set(names)) == len(names)
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert partition_dirname("CC-MAIN-2024-10-00001.warc.gz") == "CC-MAIN-2024-10-00001.warc.gz"


def test_document_ids_are_stable_and_namespaced():
    assert document_id("web", "<urn:uuid:1>") == document_id("web", "<urn:uuid:1>")
    assert document_id("web", "x") != document_id("books", "x")
    assert len(document_id("web", "x")) == 32
    assert DOCUMENT_SCHEMA.field("text").type == pa.large_string()


def test_the_duckdb_cli_users_install_reads_a_moved_catalog(lake, tmp_path):
    """The catalog is written by the DuckDB 2.0 Python package; the 1.x CLI must open it, and a
    moved lake must read its own files (never the original's)."""
    import shutil
    import subprocess
    import sys

    with lake.writer("raw_crawl", "a.warc.gz", SCHEMA) as w:
        w.write_rows([{"id": f"a{i}", "n": i} for i in range(4)])
        w.commit()
    lake.write_catalog()
    moved = tmp_path / "moved"
    shutil.copytree(lake.root, moved)
    shutil.rmtree(lake.root)
    cli = str(Path(sys.executable).with_name("duckdb"))
    out = subprocess.run([cli, "-readonly", "-csv", "-noheader", "catalog.duckdb", "-c", "SELECT count(*), sum(n) FROM raw_crawl"],
                         cwd=moved, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "4,6"
    elsewhere = subprocess.run([cli, "-readonly", str(moved / "catalog.duckdb"), "-c", "SELECT count(*) FROM raw_crawl"],
                               cwd=tmp_path, capture_output=True, text=True)
    assert "No files found" in elsewhere.stderr + elsewhere.stdout  # not silently another lake's files
    version = subprocess.run([cli, "-version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1.")
