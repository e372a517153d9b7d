"""The crawl job under Dagster's default multiprocess executor: every step in its own process."""

import dagster as dg

from orchestration.definitions import defs


def crawl_partition_job():
    return defs.resolve_job_def("crawl_partition_job")


def test_crawl_partition_job_runs_under_the_multiprocess_executor(sample_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("CRAWL_DIR", str(sample_dir / "crawl"))
    monkeypatch.setenv("SOURCES_DIR", str(sample_dir / "sources"))
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[1]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("crawl_files", [key])
        result = dg.execute_job(dg.reconstructable(crawl_partition_job), instance=instance, tags={"dagster/partition": key},
                                run_config={"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}})
        assert result.success
        steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
        assert {"raw_crawl", "deduped", "language_id", "pii_tags", "toxicity_tags", "quality_tags", "curated_web"} <= steps
        pids = {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
        assert len(pids) > 1  # steps ran in separate processes
    assert (tmp_path / "lake" / "curated_web").is_dir()
