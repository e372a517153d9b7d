"""Data stages on a real local Ray cluster (`ray start --head` on 127.0.0.1, started and stopped here):
a backfill-style run of several crawl partitions gives byte for byte the files of the local engine's
one-run-per-partition path."""

import dagster as dg
import pytest

from orchestration.partitions import crawl_files
from orchestration.resources import EngineResource
from pipelines.engine import Engine, EngineConfig, local_ray_cluster
from pipelines.parallel import map_chunks
from serving.process import free_port
from tests.orchestration.crawl_runs import COMPARED, CRAWL_ASSETS, crawl_keys, lake_files, run_each_partition


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs; yields its address."""
    with local_ray_cluster(num_cpus=2, port=free_port()) as address:
        yield address


def test_a_partition_range_on_ray_writes_the_files_of_the_local_runs(sample_dir, resources, tmp_path, ray_cluster):
    keys = crawl_keys(sample_dir)
    local = run_each_partition(keys, resources)
    on_ray = dict(resources, engine=EngineResource(kind="ray", ray_address=ray_cluster),
                  lake=type(resources["lake"])(root=str(tmp_path / "ray-lake")))
    with dg.instance_for_test() as instance:  # one run over the range, as a backfill launches it
        instance.add_dynamic_partitions(crawl_files.name, keys)
        result = dg.materialize(CRAWL_ASSETS, instance=instance, resources=on_ray,
                                tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]})
        assert result.success
        logs = [e.message for e in instance.all_logs(result.run_id)]
        assert any(f"Ray tasks on the cluster at {ray_cluster}" in m for m in logs)
        assert any("batch dedup of 3 partitions on the ray engine" in m for m in logs)
        materialized = {(m.asset_key.path[-1], m.partition) for m in result.get_asset_materialization_events()
                        for m in [m.event_specific_data.materialization]}
        assert {("curated_web", k) for k in keys} <= materialized
        assert all(e.passed for e in result.get_asset_check_evaluations())
    remote = lake_files(tmp_path / "ray-lake")
    assert sorted(local) == sorted(remote) and len(local) == len(COMPARED) * len(keys) + len(keys)  # two ledger stages
    assert [name for name in local if local[name] != remote[name]] == []


def _lengths(chunk):
    return [len(t) for t in chunk]


def test_chunks_inside_a_partition_go_to_the_active_ray_engine(ray_cluster):
    texts = [f"document {i} " * (i % 7) for i in range(3000)]
    engine = Engine(EngineConfig(kind="ray", ray_address=ray_cluster))
    with engine.active():
        on_ray = map_chunks(_lengths, texts, workers=3)
    assert on_ray == _lengths(texts)
    assert "Ray tasks on the cluster" in engine.describe(3)
