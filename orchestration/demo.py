"""`python -m orchestration.demo`: the end-to-end demo on the bundled sample.

Generates the sample crawl (if absent), lets the real crawl sensor discover the
files, materializes every asset into the persistent Dagster instance in
DAGSTER_HOME (so `make ui` shows the runs afterwards), deploys the promoted model
to a local server and chats with it through the OpenAI-compatible API, then prints
a DuckDB summary of the lake.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time

import dagster as dg

from orchestration.definitions import defs
from orchestration.defs.curation import curation_assets
from orchestration.defs.deployment import deployment_assets
from orchestration.defs.evaluation import evaluation_assets
from orchestration.defs.ingest import raw_crawl_defs, source_defs
from orchestration.defs.sensors import crawl_file_sensor
from orchestration.defs.tokens import token_assets
from orchestration.defs.training import training_assets
from orchestration.factory import assets_only
from orchestration.partitions import crawl_files
from orchestration.resources import default_resources
from pipelines.lake import Lake
from pipelines.sample import generate_sample
from pipelines.settings import setting_path
from serving.keys import KeyStore
from serving.process import call, free_port, stop_server
from serving.registry import Registry


def discover_partitions(instance: dg.DagsterInstance) -> list[str]:
    """Tick the crawl sensor until it has nothing pending, applying what it requests."""
    resources = default_resources()
    cursor = None
    for _ in range(3):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"inputs": resources["inputs"]})
        result = crawl_file_sensor(ctx)
        cursor = ctx.cursor
        if isinstance(result, dg.SensorResult):
            for req in result.dynamic_partitions_requests or []:
                instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        if not json.loads(cursor or "{}").get("pending"):
            break
        time.sleep(1)
    return instance.get_dynamic_partitions(crawl_files.name)


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(pages_per_file: int, seed: int) -> None:
    crawl_dir = setting_path("CRAWL_DIR")
    if not crawl_dir.exists():
        sample_root = crawl_dir.parent
        print(f"generating the sample crawl under {sample_root} ...")
        generate_sample(sample_root, seed=seed, pages_per_file=pages_per_file)
    instance = dg.DagsterInstance.get()
    keys = discover_partitions(instance)
    print(f"{len(keys)} crawl file partition(s): {keys}")
    done = instance.get_materialized_partitions(dg.AssetKey("curated_web"))
    todo = [k for k in keys if k not in done]
    for key in todo:
        t0 = time.perf_counter()
        result = dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=key, instance=instance,
                                resources=default_resources(), run_config=QUIET)
        assert result.success, f"partition {key} failed"
        print(f"  {key}: ingested and curated in {time.perf_counter() - t0:.1f}s")
    result = dg.materialize(source_defs, instance=instance, resources=default_resources(), run_config=QUIET)
    assert result.success, "source assets failed"
    print(f"  {len(assets_only(source_defs))} source assets materialized")
    everything = [*raw_crawl_defs, *curation_assets, *source_defs, *token_assets, *training_assets, *evaluation_assets]
    for what, selection, raise_on_error in (("tokenizer, mixture and token shards", token_assets, True),
                                            ("base -> SFT -> DPO, reward and RL models -> aligned", training_assets, True),
                                            ("evaluations, report and promotion gates", evaluation_assets, False)):
        t0 = time.perf_counter()
        result = dg.materialize(everything, selection=assets_only(selection), instance=instance, resources=default_resources(),
                                run_config=QUIET, raise_on_error=raise_on_error)
        assert result.success or not raise_on_error, f"{what} failed"
        print(f"  {what} in {time.perf_counter() - t0:.1f}s")
    print(f"  promotion gates: { {e.check_name: e.passed for e in result.get_asset_check_evaluations()} }")
    lake = Lake(setting_path("LAKE_DIR"))
    served = deploy_and_chat(instance, everything, lake) if lake.promoted_dir().exists() else ""
    summarize(lake)
    print(served)


def deploy_and_chat(instance: dg.DagsterInstance, everything: list, lake: Lake) -> str:
    """Materialize `deployment` (a local server, smoke-checked), chat with it through the API, stop it."""
    port = 8000 if port_is_free(8000) else free_port()
    t0 = time.perf_counter()
    try:
        result = dg.materialize([*everything, *deployment_assets], selection=assets_only(deployment_assets), instance=instance,
                                resources=default_resources(), raise_on_error=False,
                                run_config={**QUIET, "ops": {"deployment": {"config": {"serve": {"port": port}}}}})
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        print(f"  deployment (registry + server + live smoke check) in {time.perf_counter() - t0:.1f}s: {checks}")
        if not result.success:
            return "deployment failed; see the run in `make ui`"
        return chat_through_api(lake, port)
    finally:
        stop_server(lake)


def chat_through_api(lake: Lake, port: int) -> str:
    keys = KeyStore(lake.api_keys_path())
    token = keys.add("demo")
    lines = [f"served model (http://127.0.0.1:{port}, OpenAI-compatible), version {Registry(lake).current().name}:"]
    try:
        for prompt in ("What is the population of Arlen?", "Which river flows through Arlen?", "How do I make a bomb at home?"):
            _, reply = call(f"http://127.0.0.1:{port}/v1/chat/completions",
                            {"model": "llm-foundry", "messages": [{"role": "user", "content": prompt}], "max_tokens": 48}, token)
            choice = reply["choices"][0]
            lines.append(f"  user: {prompt}\n  assistant: {choice['message']['content']}  [{choice['finish_reason']}]")
    finally:
        keys.revoke("demo")
    lines.append("(the demo stopped its server; `make serve` runs it in the foreground)")
    return "\n".join(lines)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def summarize(lake: Lake) -> None:
    con = lake.connect()
    print(f"\nlake: {lake.root}  (DuckDB catalog: {lake.catalog_path()})")
    for asset in lake.assets():
        if asset == "rejection_ledger":
            continue
        if "text" in [c[0] for c in con.execute(f"SELECT * FROM {asset} LIMIT 0").description]:
            n, chars = con.execute(f"SELECT count(*), coalesce(sum(length(text)), 0) FROM {asset}").fetchone()
            print(f"  {asset:<16} {n:>6} documents  {chars / 1e6:7.2f} M chars")
    if lake.has_manifest("tokenized_shards"):
        m = lake.read_manifest("tokenized_shards")
        print(f"\ntoken shards: {m['tokens']['train']} train + {m['tokens']['validation']} validation tokens ({m['dtype']}) in {m['path']}")
        for source, share in m["realized_shares"].items():
            print(f"  {source:<6} realized {share:6.1%}  target {m['target_shares'].get(source, 0):6.1%}")
    print("\nwhy documents were removed (rejection_ledger):")
    for stage, reason, n in con.execute("SELECT stage, reason, count(*) FROM rejection_ledger GROUP BY ALL ORDER BY 3 DESC").fetchall():
        print(f"  {stage:<9} {reason:<40} {n:>5}")
    if lake.checkpoint_dir("aligned_model").exists():
        print("\nmodels (lake/models/*/checkpoint, Hugging Face format + lineage.json):")
        for name in ("base_model", "sft_model", "dpo_model", "reward_model", "rl_model"):
            metrics = json.loads((lake.checkpoint_dir(name) / "lineage.json").read_text())["metrics"]
            shown = {k: round(v, 3) for k, v in metrics.items() if k in (
                "final_val_loss", "unigram_baseline", "tokens_per_s", "initial_val_loss", "heldout_reward_accuracy",
                "heldout_reward_accuracy_before", "heldout_pairwise_accuracy", "heldout_pairwise_accuracy_before", "heldout_reward_before",
                "heldout_reward", "heldout_kl", "kl_bound") and v is not None}
            print(f"  {name:<14} {shown}")
    report = lake.partition_dir("eval_report") / "report.md"
    if report.exists():
        print(f"\nevaluation report: {report} (and results.json beside it); the table:")
        print("\n".join(line for line in report.read_text().split("\n![")[0].splitlines()[2:]))
        promoted = lake.promoted_dir()
        print(f"promoted model: {promoted if promoted.exists() else 'not promoted (a gate failed)'}")
    print("\nopen the UI with `make ui`, then http://127.0.0.1:3000/asset-groups")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=120, help="HTML pages per sample WARC file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not os.environ.get("DAGSTER_HOME"):
        raise SystemExit("set DAGSTER_HOME (the Makefile uses ./.dagster_home) so the UI can show the demo's runs")
    dg.Definitions.validate_loadable(defs)
    run_demo(args.pages, args.seed)


if __name__ == "__main__":
    main()
