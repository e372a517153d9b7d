import json

import dagster as dg

from orchestration.definitions import defs
from orchestration.defs.curation import curation_assets
from orchestration.defs.ingest import raw_crawl, raw_crawl_defs
from orchestration.defs.sensors import run_failure_recorder
from orchestration.partitions import crawl_files


def test_automation_sensor_runs_by_default_and_requests_curation_after_ingest(sample_dir, resources):
    assert defs.resolve_sensor_def("automation_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert dg.materialize([raw_crawl], partition_key=key, instance=instance, resources=resources).success
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert result.get_requested_partitions(dg.AssetKey("deduped")) == {key}
        assert result.get_num_requested(dg.AssetKey("base_model")) == 0  # models wait for their weekly cron


def test_run_failure_sensor_records_the_failed_run(sample_dir, resources):
    key = sorted(p.name for p in (sample_dir / "crawl").iterdir())[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, [key])
        cfg = {"ops": {"raw_crawl": {"config": {"max_lost_share": 0.0}}}}  # the blocking ingest-loss check fails (a corrupt record)
        result = dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=key, instance=instance, resources=resources,
                                run_config=cfg, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
        ctx = dg.build_run_status_sensor_context(sensor_name="run_failure_recorder", dagster_event=failure,
                                                 dagster_instance=instance, dagster_run=run,
                                                 resources={"lake": resources["lake"]}).for_run_failure()
        run_failure_recorder(ctx)
        lines = resources["lake"].lake.run_failures_path().read_text().splitlines()
        record = json.loads(lines[-1])
        assert record["run_id"] == result.run_id and any("ingest_lost_no_readable_pages" in e for e in record["step_errors"])


def test_freshness_is_declared_where_a_cadence_promises_it():
    from datetime import timedelta

    graph = defs.resolve_asset_graph()
    windows = {k.to_user_string(): graph.get(k).freshness_policy for k in graph.get_all_asset_keys()
               if graph.get(k).freshness_policy is not None}
    nightly = {f"source_{s}" for s in ("arxiv", "books", "code", "qa", "wiki")}  # sources_refresh_schedule
    weekly = {"base_model", "sft_model", "dpo_model", "reward_model", "rl_model", "aligned_model", "promoted_model",
              "deployment"}  # the weekly retrain
    assert set(windows) == nightly | weekly
    assert all(windows[a].fail_window.to_timedelta() == timedelta(hours=48) for a in nightly)
    assert all(windows[a].fail_window.to_timedelta() == timedelta(days=15) for a in weekly)
