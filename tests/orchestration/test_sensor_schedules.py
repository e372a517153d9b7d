import os
import shutil
import time
from datetime import UTC, datetime

import dagster as dg

from orchestration.definitions import defs
from orchestration.defs.curation import curation_assets
from orchestration.defs.ingest import raw_crawl_defs
from orchestration.defs.sensors import crawl_file_sensor
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


def test_refresh_schedule_requests_valid_runs_for_unmaterialized_partitions(sample_dir, resources):
    schedule = defs.resolve_schedule_def("crawl_refresh_schedule")
    job = defs.resolve_job_def("crawl_partition_job")
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, keys)
        assert dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=keys[0], instance=instance, resources=resources).success
        ctx = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def(),
                                       scheduled_execution_time=datetime(2026, 1, 1, 6, tzinfo=UTC))
        data = schedule.evaluate_tick(ctx)
        assert sorted(r.partition_key for r in data.run_requests) == keys[1:]
        for req in data.run_requests:
            dg.validate_run_config(job, req.run_config)


def test_sources_schedule_tick_is_valid():
    schedule = defs.resolve_schedule_def("sources_refresh_schedule")
    with dg.instance_for_test() as instance:
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def()))
        assert len(data.run_requests) == 1
        dg.validate_run_config(defs.resolve_job_def("sources_ingest_job"), data.run_requests[0].run_config)
