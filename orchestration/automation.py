"""Declarative automation conditions: what refreshes when its inputs change (the sensor that
evaluates them is in `defs/sensors.py`).

- curation assets follow their crawl partition as soon as it is re-ingested (eager);
- the tokenizer, mixture and shards rebuild once a day if any input changed (on_cron), so a
  stream of new crawl files does not retrain the tokenizer each time;
- the base model retrains weekly when its shards changed; SFT, DPO, evals and the report
  follow their parents eagerly; promotion also waits for every blocking gate to pass.
"""

from datetime import timedelta

import dagster as dg

CURATION = dg.AutomationCondition.eager()
DAILY = dg.AutomationCondition.on_cron("0 4 * * *")
WEEKLY = dg.AutomationCondition.on_cron("0 5 * * 0")
FOLLOW = dg.AutomationCondition.eager()
PROMOTE = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

# Freshness the UI reports (and alerts can key on): the cadence above plus slack for a failed run.
# Corpora are re-ingested nightly by `sources_refresh_schedule`; the model chain retrains weekly.
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
WEEKLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=15), warn_window=timedelta(days=8))
