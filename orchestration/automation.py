"""Declarative automation: what refreshes when its inputs change, and the sensors that run it.

- curation assets follow their crawl partition as soon as it is re-ingested (eager);
- the tokenizer, mixture and shards rebuild once a day if any input changed (on_cron), so a
  stream of new crawl files does not retrain the tokenizer each time;
- the base model retrains weekly when its shards changed; SFT, DPO, evals and the report
  follow their parents eagerly; promotion also waits for every blocking gate to pass.
"""

import json
import time

import dagster as dg

from orchestration.resources import LakeResource

CURATION = dg.AutomationCondition.eager()
DAILY = dg.AutomationCondition.on_cron("0 4 * * *")
WEEKLY = dg.AutomationCondition.on_cron("0 5 * * 0")
FOLLOW = dg.AutomationCondition.eager()
PROMOTE = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60, description="Evaluates every asset's AutomationCondition (running by default).")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Records every failed run in lake/run_failures.jsonl (run, job, step errors).")
def run_failure_recorder(context: dg.RunFailureSensorContext, lake: LakeResource) -> None:
    record = {"time": time.time(), "run_id": context.dagster_run.run_id, "job": context.dagster_run.job_name,
              "tags": {k: v for k, v in context.dagster_run.tags.items() if k.startswith("dagster/partition")},
              "error": context.failure_event.message,
              "step_errors": [f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
                              for e in context.get_step_failure_events()]}
    path = lake.lake.root / "run_failures.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    context.log.info(f"recorded failed run {record['run_id']} in {path}")
