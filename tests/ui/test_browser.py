"""Headless browser test of the Dagster web UI (part of `make test`, which installs Debian's chromium).

Materializes the whole graph (tiny presets) on a small generated sample into a Dagster
instance, starts `dagster dev` (webserver + daemon) on 127.0.0.1 over it, opens the asset
catalog in headless Chromium, checks the key assets render, that the model and report pages
show the loss curve and the scores without a click, launches a materialization through
GraphQL and waits for it to succeed, and launches a backfill of crawl partitions that the
daemon runs as one range run.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from evaluation.report import MODEL_ORDER

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY_ASSETS = ("raw_crawl", "curated_web", "tokenized_shards", "base_model", "rl_model", "aligned_model", "eval_report")
TINY = {"tokenizer": {"vocab_size": 600, "model_max_length": 64}, "tokenized_shards": {"val_fraction": 0.1, "shard_tokens": 4000},
        "base_model": {"preset": "test", "max_steps": 6, "eval_every": 3}, "sft_model": {"steps": 4, "batch_size": 4},
        "dpo_model": {"steps": 3, "batch_size": 4}, "reward_model": {"steps": 3, "batch_size": 4},
        "rl_model": {"steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8, "heldout_samples": 1},
        "eval_report": {"max_contamination_rate": 1.0},  # a 40-page sample repeats the eval set's city names
        **{f"{m}_eval": {"max_generation_items": 8, "max_mc_items": 6} for m in MODEL_ORDER}}


SNAPSHOT_KEYS = [f"crawl-data/CC-MAIN-2026-05/segments/{i // 100:04d}/warc/CC-MAIN-2026-05-{i:05d}.warc.gz" for i in range(10_000)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    from pipelines.sample import generate_sample

    root = tmp_path_factory.mktemp("ui")
    generate_sample(root / "sample", n_files=1, pages_per_file=40)
    home = root / "home"
    home.mkdir()
    shutil.copy("dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home), LAKE_DIR=str(root / "lake"), CRAWL_DIR=str(root / "sample" / "crawl"),
               SOURCES_DIR=str(root / "sample" / "sources"), CHAT_DIR=str(root / "sample" / "chat"))
    _materialize_everything(home, root)
    log = open(root / "dagster.log", "w")  # noqa: SIM115 (the server writes to it until teardown closes it)
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/server_info", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("dagster dev did not start: " + (root / "dagster.log").read_text()[-2000:])
    yield {"url": url, "port": port, "lake": root / "lake"}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _materialize_everything(home: Path, root: Path) -> None:
    """Crawl partition -> eval report into the instance the server will show (in process, tiny presets)."""
    import dagster as dg

    from orchestration.defs.curation import curation_assets
    from orchestration.defs.evaluation import evaluation_assets
    from orchestration.defs.ingest import raw_crawl_defs, source_defs
    from orchestration.defs.tokens import token_assets
    from orchestration.defs.training import training_assets
    from orchestration.factory import assets_only
    from orchestration.partitions import crawl_files
    from orchestration.resources import EngineResource, InputsResource, LakeResource

    resources = {"engine": EngineResource(), "lake": LakeResource(root=str(root / "lake")),
                 "pipes_subprocess_client": dg.PipesSubprocessClient(),
                 "inputs": InputsResource(crawl_dir=str(root / "sample" / "crawl"), sources_dir=str(root / "sample" / "sources"),
                                          chat_dir=str(root / "sample" / "chat"))}
    keys = sorted(p.name for p in (root / "sample" / "crawl").iterdir())  # a WARC file and its WET twin
    everything = [*raw_crawl_defs, *curation_assets, *source_defs, *token_assets, *training_assets, *evaluation_assets]
    run_config = {"ops": {name: {"config": config} for name, config in TINY.items()}}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions(crawl_files.name, keys)  # both registered; the WET one is left for the backfill test
        assert dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=keys[0], instance=instance, resources=resources).success
        rest = assets_only([*source_defs, *token_assets, *training_assets, *evaluation_assets])
        dg.materialize(everything, selection=rest, instance=instance, resources=resources, run_config=run_config,
                       raise_on_error=False)  # a tiny model may fail a promotion gate; the pages show that too
        # a snapshot's worth of registered crawl files (as the listing sensor registers them): the pages must still load
        instance.add_dynamic_partitions(crawl_files.name, SNAPSHOT_KEYS)


def test_webserver_binds_to_loopback_only(dagster_dev):
    """The listening socket of the UI port is 127.0.0.1, not 0.0.0.0 (read from /proc/net/tcp)."""
    port = f"{dagster_dev['port']:04X}"
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[1].endswith(":" + port) and line.split()[3] == "0A"]
    assert listening == ["0100007F:" + port]


def test_asset_catalog_renders_and_a_materialization_succeeds(dagster_dev, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian chromium is not installed: `make browser-deps` installs it"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.goto(dagster_dev["url"] + "/assets", wait_until="domcontentloaded", timeout=120_000)
        page.get_by_text("aligned_model", exact=True).first.wait_for(timeout=120_000)  # the catalog lists the graph
        # the catalog list is virtualized (rows below the fold are not in the page): the ingest group's page lists raw_crawl
        page.goto(f"{dagster_dev['url']}/locations/llm_foundry/asset-groups/ingest/list", wait_until="domcontentloaded",
                  timeout=120_000)
        page.get_by_text("raw_crawl", exact=True).first.wait_for(timeout=120_000)
        page.goto(f"{dagster_dev['url']}/assets/raw_crawl?view=partitions", wait_until="domcontentloaded", timeout=120_000)
        try:  # the partitions tab counts every registered crawl file: 1 materialized, 10,001 never run
            page.get_by_text(re.compile(r"Missing \(10001\)")).first.wait_for(timeout=120_000)
        finally:
            page.screenshot(path=str(tmp_path / "raw_crawl_partitions.png"))
        for name in KEY_ASSETS:  # each key asset's own page renders
            page.goto(f"{dagster_dev['url']}/assets/{name}", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text(name, exact=True).first.wait_for(timeout=120_000)
        page.screenshot(path=str(tmp_path / "asset.png"))
        browser.close()


def test_model_and_report_pages_show_the_curves_and_scores_without_a_click(dagster_dev, tmp_path):
    """The answers are on the page: an <img> of the training curve on the model pages, the score table on the report page."""
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("UI_SCREENSHOTS", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 2400})
        for model, curve in (("dpo_model", "loss curve"), ("rl_model", "reward curve")):
            page.goto(f"{dagster_dev['url']}/assets/{model}", wait_until="domcontentloaded", timeout=120_000)
            image = page.locator(f"img[alt='{curve}']").first
            image.wait_for(timeout=120_000)
            assert image.evaluate("img => img.complete && img.naturalWidth > 0")  # the SVG decoded and drew
            page.screenshot(path=str(shots / f"{model}.png"), full_page=True)
        page.goto(f"{dagster_dev['url']}/assets/eval_report", wait_until="domcontentloaded", timeout=120_000)
        page.get_by_text("instruction following", exact=True).first.wait_for(timeout=120_000)
        for model in MODEL_ORDER:
            assert page.get_by_text(model, exact=True).count() >= 1
        page.screenshot(path=str(shots / "eval_report.png"), full_page=True)
        browser.close()

    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev["port"])
    query = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
    params = {"selector": {"repositoryLocationName": "llm_foundry", "repositoryName": "__repository__", "jobName": "__ASSET_JOB",
                           "assetSelection": [{"path": ["source_wiki"]}]}, "runConfigData": {}}
    result = client._execute(query, {"params": params})
    assert result["launchRun"]["__typename"] == "LaunchRunSuccess", result
    run_id = result["launchRun"]["run"]["runId"]
    deadline = time.time() + 180
    status = None
    while time.time() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS"
    assert (Path(dagster_dev["lake"]) / "source_wiki" / "_all" / "part-00000.parquet").exists()


def _graphql(dagster_dev):
    from dagster_graphql import DagsterGraphQLClient

    return DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev["port"])


def test_a_backfill_of_crawl_partitions_is_one_range_run(dagster_dev):
    """The backfill daemon of `dagster dev` turns a backfill of crawl partitions into one run over the range
    (crawl_backfill_policy), and every stage of that run processes both partitions."""
    client = _graphql(dagster_dev)
    keys = sorted(p.name for p in (Path(dagster_dev["lake"]).parent / "sample" / "crawl").iterdir())
    assets = ["raw_crawl", "deduped", "language_id", "pii_tags", "toxicity_tags", "quality_tags", "curated_web"]
    launch = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
    result = client._execute(launch, {"params": {"partitionNames": keys, "assetSelection": [{"path": [a]} for a in assets]}})
    assert result["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["launchPartitionBackfill"]["backfillId"]
    runs_query = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
        runId status tags { key value } } } } }"""
    status_query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""
    deadline, runs, status = time.time() + 300, [], None
    while time.time() < deadline:
        status = client._execute(status_query, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        runs = client._execute(runs_query, {"filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}})[
            "runsOrError"]["results"]
        if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED") and all(
                r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            break
        time.sleep(3)
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", (status, runs)
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (keys[0], keys[1])
    lake = Path(dagster_dev["lake"])
    assert all((lake / "curated_web" / key / "part-00000.parquet").exists() for key in keys)
