import dagster as dg
import pyarrow.parquet as pq

from orchestration.defs.ingest import raw_crawl, source_assets
from orchestration.partitions import crawl_files
from orchestration.resources import InputsResource


def _crawl_keys(sample_dir):
    return sorted(p.name for p in (sample_dir / "crawl").iterdir())


def test_raw_crawl_partition_materializes_with_metadata(sample_dir, resources):
    key = next(k for k in _crawl_keys(sample_dir) if k.endswith("00000.warc.gz"))  # the one with the corrupt record
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        result = dg.materialize([raw_crawl], partition_key=key, instance=instance, resources=resources)
        assert result.success
        mat = result.asset_materializations_for_node("raw_crawl")[0]
        meta = mat.metadata
        outcomes = {r.data["outcome"]: r.data["count"] for r in meta["outcomes"].records}
        assert outcomes["corrupt_record"] == 1 and outcomes["kept"] == meta["documents"].value
        assert len(meta["preview"].records) == 5
        path = meta["path"].value
        assert pq.read_metadata(path).num_rows == meta["documents"].value
        assert mat.tags["dagster/data_version"] == meta["content_hash"].value
        assert instance.get_latest_data_version_record(raw_crawl.key, partition_key=key) is not None


def test_source_assets_materialize(resources):
    with dg.instance_for_test() as instance:
        result = dg.materialize(source_assets, instance=instance, resources=resources)
        assert result.success
        docs = {m.asset_key.path[-1]: m.metadata["documents"].value for m in result.get_asset_materialization_events() and
                [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]}
        assert set(docs) == {"source_books", "source_code", "source_wiki", "source_arxiv", "source_qa"}
        assert all(v > 0 for v in docs.values())


def test_corrupt_crawl_file_does_not_fail_the_run(tmp_path, resources):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "broken.warc.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00garbage" * 100)
    res = dict(resources, inputs=InputsResource(crawl_dir=str(crawl), sources_dir=str(tmp_path)))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, ["broken.warc.gz"])
        result = dg.materialize([raw_crawl], partition_key="broken.warc.gz", instance=instance, resources=res)
        assert result.success
        meta = result.asset_materializations_for_node("raw_crawl")[0].metadata
        assert meta["documents"].value == 0 and "first_errors" in meta


def test_a_user_ingests_a_file_from_the_command_line_without_the_sensor(sample_dir, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    crawl = tmp_path / "crawl"
    crawl.mkdir()
    name = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    shutil.copy(sample_dir / "crawl" / name, crawl / name)
    (tmp_path / "home").mkdir()
    env = dict(os.environ, CRAWL_DIR=str(crawl), LAKE_DIR=str(tmp_path / "lake"), DAGSTER_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-m", "orchestration.ingest_file", str(crawl / name)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{name}: ok" in out.stdout
    assert (tmp_path / "lake" / "curated_web").is_dir()
