import gzip
import os
import shutil
import time
from datetime import UTC, datetime

import dagster as dg

from orchestration.definitions import defs
from orchestration.defs.curation import curation_assets
from orchestration.defs.ingest import raw_crawl_defs
from orchestration.defs.sensors import RUNS_PER_TICK, crawl_file_sensor, crawl_listing_sensor
from orchestration.partitions import crawl_files
from orchestration.resources import InputsResource


def _tick(instance, inputs, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"inputs": inputs})
    result = crawl_file_sensor(ctx)
    if isinstance(result, dg.SensorResult):
        for req in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return result, ctx.cursor


def _age(path, seconds=3600):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_sensor_adds_partitions_for_new_files_only(sample_dir, tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    files = sorted((sample_dir / "crawl").iterdir())
    for f in files[:2]:
        _age(shutil.copy(f, crawl / f.name))
    (crawl / "notes.txt").write_text("not a crawl file")
    (crawl / ".partial.warc.gz").write_bytes(b"x")
    inputs = InputsResource(crawl_dir=str(crawl), sources_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        result, cursor = _tick(instance, inputs)
        assert sorted(r.partition_key for r in result.run_requests) == sorted(f.name for f in files[:2])
        assert sorted(instance.get_dynamic_partitions(crawl_files.name)) == sorted(f.name for f in files[:2])
        result, cursor = _tick(instance, inputs, cursor)
        assert isinstance(result, dg.SkipReason)
        (crawl / "sub").mkdir()
        _age(shutil.copy(files[2], crawl / "sub" / files[2].name))
        result, cursor = _tick(instance, inputs, cursor)
        assert [r.partition_key for r in result.run_requests] == [f"sub/{files[2].name}"]
        assert len(instance.get_dynamic_partitions(crawl_files.name)) == 3


def test_sensor_waits_until_a_fresh_file_stops_growing(sample_dir, tmp_path):
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    src = sorted((sample_dir / "crawl").iterdir())[0]
    target = crawl / src.name
    target.write_bytes(src.read_bytes()[:1000])  # being copied right now
    inputs = InputsResource(crawl_dir=str(crawl), sources_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        result, cursor = _tick(instance, inputs)
        assert isinstance(result, dg.SkipReason) and "still being written" in result.skip_message
        target.write_bytes(src.read_bytes())  # copy finished: size changed, so still pending
        result, cursor = _tick(instance, inputs, cursor)
        assert isinstance(result, dg.SkipReason)
        result, cursor = _tick(instance, inputs, cursor)  # same size twice: ready
        assert [r.partition_key for r in result.run_requests] == [src.name]


def test_sensor_skips_when_crawl_dir_is_missing(tmp_path):
    inputs = InputsResource(crawl_dir=str(tmp_path / "nope"), sources_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        result, _ = _tick(instance, inputs)
        assert isinstance(result, dg.SkipReason) and "CRAWL_DIR" in result.skip_message


def test_refresh_schedule_requests_valid_runs_for_partitions_whose_run_failed(sample_dir, resources):
    schedule = defs.resolve_schedule_def("crawl_refresh_schedule")
    job = defs.resolve_job_def("crawl_partition_job")
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [*keys, "never-run.warc.gz"])
        assert dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=keys[0], instance=instance, resources=resources).success
        for i, key in enumerate(keys[1:]):  # runs that ended unfinished
            status = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)[i % 2]
            instance.create_run_for_job(job, tags={"dagster/partition": key}, status=status)
        instance.create_run_for_job(job, tags={"dagster/partition": keys[0]}, status=dg.DagsterRunStatus.FAILURE)  # later succeeded
        ctx = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                       scheduled_execution_time=datetime(2026, 1, 1, 6, tzinfo=UTC))
        data = schedule.evaluate_tick(ctx)
        assert sorted(r.partition_key for r in data.run_requests) == keys[1:]  # not the file no run was ever requested for
        for req in data.run_requests:
            dg.validate_run_config(job, req.run_config)


def test_sources_schedule_tick_is_valid():
    schedule = defs.resolve_schedule_def("sources_refresh_schedule")
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def()))
        assert len(data.run_requests) == 1
        dg.validate_run_config(defs.resolve_job_def("sources_ingest_job"), data.run_requests[0].run_config)


def _snapshot_listing(path, n):
    keys = [f"crawl-data/CC-MAIN-2026-05/segments/{i // 100:04d}/warc/CC-MAIN-2026-05-{i:05d}.warc.gz" for i in range(n)]
    path.write_bytes(gzip.compress(("\n".join(keys) + "\n").encode()))
    return keys


def test_listing_sensor_registers_a_whole_snapshot_and_requests_its_runs_a_tick_at_a_time(tmp_path):
    keys = _snapshot_listing(tmp_path / "warc.paths.gz", 10_000)
    inputs = InputsResource(crawl_dir=str(tmp_path / "none"), sources_dir=str(tmp_path), crawl_listing=str(tmp_path / "warc.paths.gz"),
                            crawl_base_url="https://data.commoncrawl.org/")
    with dg.instance_for_test() as instance:
        cursor, requested = None, []
        for _ in range(3):
            ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"inputs": inputs})
            result = crawl_listing_sensor(ctx)
            requested += [r.partition_key for r in result.run_requests]
            cursor = ctx.cursor
        assert instance.get_dynamic_partitions(crawl_files.name) == keys  # all 10,000 registered on the first tick
        assert requested == keys[:3 * RUNS_PER_TICK]  # runs follow in listing order, a batch per tick
        sample = InputsResource(**{**inputs.model_dump(), "crawl_sample": "shard:0/1000"})
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"inputs": sample})
        result = crawl_listing_sensor(ctx)  # another sample: a new selection starts from its beginning
        assert [r.partition_key for r in result.run_requests] == keys[::1000]
        assert len(instance.get_dynamic_partitions(crawl_files.name)) == 10_000
        # the directory sensor ticks beside 10,000 registered partitions
        skip, _ = _tick(instance, InputsResource(crawl_dir=str(tmp_path), sources_dir=str(tmp_path)))
        assert isinstance(skip, dg.SkipReason)


def test_listing_sensor_skips_without_a_listing(tmp_path):
    with dg.instance_for_test() as instance:
        inputs = InputsResource(crawl_dir=str(tmp_path), sources_dir=str(tmp_path))
        ctx = dg.build_sensor_context(instance=instance, resources={"inputs": inputs})
        assert "CRAWL_LISTING is not set" in crawl_listing_sensor(ctx).skip_message
