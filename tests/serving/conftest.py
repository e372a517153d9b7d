"""One lake per session built like `make demo` (same stages, default configs, the test sample),
ending in the `deployment` asset: a local server on 127.0.0.1 serving the promoted model.

The RL variant is not the promoted (DPO) one, so it trains and is evaluated briefly here: the RL
tests and the demo cover it at full size."""

import dagster as dg
import pytest

from orchestration.defs.curation import curation_assets
from orchestration.defs.deployment import deployment_assets
from orchestration.defs.evaluation import evaluation_assets
from orchestration.defs.ingest import raw_crawl_defs, source_defs
from orchestration.defs.tokens import token_assets
from orchestration.defs.training import training_assets
from orchestration.factory import assets_only
from orchestration.partitions import crawl_files
from orchestration.resources import EngineResource, InputsResource, LakeResource
from pipelines.lake import Lake
from pipelines.sample.chat import write_chat_data
from serving.process import free_port, stop_server

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BRIEF_RL = {"rl_model": {"steps": 4, "prompts_per_step": 4, "heldout_samples": 2},
            "rl_model_eval": {"max_generation_items": 8, "max_mc_items": 6}}


@pytest.fixture(scope="session")
def deployed(sample_dir, tmp_path_factory):
    """(lake, deployment materialization result); the server is stopped at the end of the session."""
    root = tmp_path_factory.mktemp("deployed")
    lake = Lake(root / "lake")
    chat = write_chat_data(root / "chat")
    resources = {"engine": EngineResource(), "lake": LakeResource(root=str(lake.root)),
                 "inputs": InputsResource(crawl_dir=str(sample_dir / "crawl"), sources_dir=str(sample_dir / "sources"),
                                          chat_dir=str(chat["sft"].parent)),
                 "pipes_subprocess_client": dg.PipesSubprocessClient()}
    everything = [*raw_crawl_defs, *curation_assets, *source_defs, *token_assets, *training_assets, *evaluation_assets,
                  *deployment_assets]
    keys = sorted(p.name for p in (sample_dir / "crawl").iterdir())
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_files.name, keys)
        for key in keys:
            assert dg.materialize([*raw_crawl_defs, *curation_assets], partition_key=key, instance=instance, resources=resources,
                                  run_config=QUIET).success
        assert dg.materialize(source_defs, instance=instance, resources=resources, run_config=QUIET).success
        for group in (token_assets, training_assets, evaluation_assets):
            names = {a.key.to_user_string() for a in assets_only(group)}
            ops = {name: {"config": config} for name, config in BRIEF_RL.items() if name in names}
            assert dg.materialize(everything, selection=assets_only(group), instance=instance, resources=resources,
                                  run_config={**QUIET, "ops": ops}).success
        port = free_port()
        result = dg.materialize(everything, selection=assets_only(deployment_assets), instance=instance, resources=resources,
                                run_config={**QUIET, "ops": {"deployment": {"config": {"serve": {"port": port, "reload_poll_s": 0.2}}}}})
    try:
        yield lake, result, f"http://127.0.0.1:{port}"
    finally:
        stop_server(lake)
