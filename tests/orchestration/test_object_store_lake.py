"""The lake on object storage: crawl partitions run to curated_web with LAKE_DIR=s3://... against an
S3-compatible server on 127.0.0.1 (moto, started by the set-up) write byte for byte the files of a
local lake, and every table is read back through the store (manifests, DuckDB views, the catalog)."""

import json
from pathlib import Path

import dagster as dg
import pytest
from pyarrow import fs

from orchestration.partitions import crawl_files
from orchestration.resources import LakeResource
from pipelines.lake import Lake
from tests.orchestration.crawl_runs import COMPARED, CRAWL_ASSETS, crawl_keys, run_each_partition


@pytest.fixture
def bucket(s3_env):
    s3 = fs.S3FileSystem(endpoint_override=s3_env, region="us-east-1", allow_bucket_creation=True, allow_bucket_deletion=True)
    s3.create_dir("lake-test")
    yield s3
    s3.delete_dir("lake-test")


def test_crawl_to_curated_on_s3_writes_the_files_of_a_local_lake(sample_dir, resources, tmp_path, bucket):
    keys = crawl_keys(sample_dir)
    local = run_each_partition(keys, resources)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, keys)
        for i, key in enumerate(keys):  # the last partition runs on "another machine": a fresh work dir, the index from the bucket
            on_s3 = dict(resources, lake=LakeResource(root="s3://lake-test/lake", work_dir=str(tmp_path / f"work-{i == len(keys) - 1}")))
            result = dg.materialize(CRAWL_ASSETS, partition_key=key, instance=instance, resources=on_s3)
            assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    local_root = Path(resources["lake"].root)
    info = bucket.get_file_info(fs.FileSelector("lake-test/lake", recursive=True))
    stored = sorted(i.path.removeprefix("lake-test/lake/") for i in info if i.type == fs.FileType.File)
    remote = {name: bucket.open_input_stream(f"lake-test/lake/{name}", compression=None).read()
              for name in stored if name.endswith(".parquet") and name.split("/")[0] in COMPARED}
    assert sorted(remote) == sorted(local) and len(local) == len(COMPARED) * len(keys) + len(keys)
    assert [name for name in local if local[name] != remote[name]] == []
    assert not [n for n in stored if "/." in n or n.startswith(".")]  # no temp key left behind
    assert "catalog.duckdb" in stored and "dedup_index/index.json" in stored

    lake = Lake.at("s3://lake-test/lake", tmp_path / "reader")  # a reader with nothing local
    assert lake.has_data("curated_web", keys[0]) and {"raw_crawl", "curated_web", "rejection_ledger"} <= set(lake.assets())
    assert [m["partition"] for m in lake.manifests("curated_web")] == keys
    assert lake.read_manifest("curated_web", keys[0])["path"] == f"s3://lake-test/lake/curated_web/{keys[0]}/part-00000.parquet"
    query = "SELECT stage, count(*) FROM rejection_ledger GROUP BY 1 ORDER BY 1"
    assert lake.connect().execute(query).fetchall() == Lake(local_root).connect().execute(query).fetchall()
    index = json.loads(bucket.open_input_stream("lake-test/lake/dedup_index/index.json", compression=None).read())
    assert sorted(index["partitions"]) == keys
    named = {r["dir"] for r in index["runs"]} | set(index["docs"].values())
    index_files = {"/".join(n.split("/")[1:3]) for n in stored if n.startswith("dedup_index/") and n != "dedup_index/index.json"}
    assert index_files == named  # every stored run and docs file is live: replaced ones were deleted
