"""Training assets: base model, SFT data + model, preference data + aligned model.

Each model trains in a separate process launched through dagster-pipes
(`python -m training.cli ...`): logs and metrics stream into the run, the child reports
the materialization (loss curve, metrics, lineage), and cancelling the run stops it.
Models share the `training` pool, so one trains at a time (`dagster.yaml`). The job file
the child reads holds the library's config dataclass as given in the launchpad.
"""

import json
import sys
from collections.abc import Callable

import dagster as dg

from orchestration.automation import FOLLOW, WEEKLY, WEEKLY_FRESHNESS
from orchestration.factory import CODE_VERSION, OWNERS, dagster_config, stage_assets, to_library
from orchestration.resources import LakeResource
from pipelines.contract import config_from_dict, config_to_dict
from pipelines.lake import Lake, atomic_write_bytes
from pipelines.openlineage import lineage_run
from pipelines.settings import code_commit
from training.cli import JOBS
from training.datasets import PREFERENCE_DATASET, SFT_DATASET
from training.dpo import DpoConfig
from training.pretrain import PretrainConfig
from training.reward import RewardConfig
from training.sft import SftConfig


def _lineage(context: dg.AssetExecutionContext, lake: Lake) -> dict:
    shards = lake.read_manifest("tokenized_shards")
    return {"run_id": context.run.run_id, "asset": context.asset_key.to_user_string(), "lake_root": str(lake.root),
            "code_version": context.assets_def.code_versions_by_key[context.asset_key], "git_commit": code_commit(),
            "shards_hash": shards["content_hash"], "mixture_hash": shards["mixture_hash"],
            "mixture_weights": shards["mixture_weights"], "tokenizer_hash": shards["tokenizer_hash"],
            "upstream": shards["inputs"], "shard_tokens": shards["tokens"]}


def _sft_and_pairs(context: dg.AssetExecutionContext, lake: Lake) -> dict:
    """What both preference stages (DPO, the reward model) train from: the SFT checkpoint and the ranked pairs."""
    pairs = lake.read_manifest("preference_dataset")
    return {"sft_dir": str(lake.checkpoint_dir("sft_model")), "pairs_path": pairs["path"],
            "lineage": dict(_lineage(context, lake), preference_dataset_hash=pairs["content_hash"])}


def model_asset(name: str, cli_stage: str, config_cls: type, inputs: Callable[[dg.AssetExecutionContext, Lake], dict],
                deps: list, automation_condition: dg.AutomationCondition, description: str) -> dg.AssetsDefinition:
    """An asset that writes the training job (paths + config + lineage) and runs `training.cli <cli_stage>` on it."""
    config_type = dagster_config(config_cls)

    @dg.asset(name=name, deps=deps, kinds={"pytorch", "huggingface"}, pool="training", group_name="training", owners=OWNERS,
              tags={"stage": "training"}, code_version=CODE_VERSION, automation_condition=automation_condition,
              description=description, freshness_policy=WEEKLY_FRESHNESS)
    def model(context: dg.AssetExecutionContext, config: config_type, lake: LakeResource,
              pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        for restored in lake.lake.recover():
            context.log.warning(f"restored {restored}: a killed run had left its directory swap half done")
        job = {**inputs(context, lake.lake), "out_dir": str(lake.lake.checkpoint_dir(name)),
               "config": config_to_dict(to_library(config, config_cls))}
        config_from_dict(JOBS[cli_stage], job)  # a malformed job fails here, not in the child
        job_path, error_path = lake.lake.training_job_path(name), lake.lake.training_error_path(name)
        atomic_write_bytes(job_path, json.dumps(job, indent=2, default=str).encode())
        error_path.unlink(missing_ok=True)
        command = [sys.executable, "-m", "training.cli", cli_stage, "--config", str(job_path), "--error-file", str(error_path)]
        with lineage_run(lake.lake, name, None, tuple(deps), parent_run_id=context.run_id, attempt=context.retry_number,
                         engine_version=dg.__version__, description=description) as lineage:
            try:
                result = pipes_subprocess_client.run(context=context, command=command,
                                                     extras={"job": str(job_path)}).get_materialize_result()
            except Exception as exc:  # the Pipes client's own error says only "failed with code 1"
                if not error_path.exists():
                    raise
                error = error_path.read_text()
                raise dg.Failure(description=f"{name} training failed: {error.strip().splitlines()[-1]}",
                                 metadata={"traceback": dg.MetadataValue.md(f"```\n{error}\n```"),
                                           "job": dg.MetadataValue.path(str(job_path))}) from exc
            lineage["manifest"] = {"content_hash": result.data_version.value if result.data_version else None}
        return result

    return model


base_model = model_asset(
    "base_model", "pretrain", PretrainConfig, deps=["tokenized_shards", "tokenizer"], automation_condition=WEEKLY,
    inputs=lambda context, lake: {"shards_dir": str(lake.partition_dir("tokenized_shards")), "lineage": _lineage(context, lake)},
    description="A Llama-style causal LM pretrained on the token shards; Hugging Face checkpoint with lineage.json.\n\n"
                "Resumable: model, optimizer, step and RNG are saved every `checkpoint_every` steps, so a retried run "
                "continues where the killed one stopped.")
sft_model = model_asset(
    "sft_model", "sft", SftConfig, deps=["base_model", "sft_dataset", "tokenized_shards"], automation_condition=FOLLOW,
    inputs=lambda context, lake: {
        "base_dir": str(lake.checkpoint_dir("base_model")), "data_path": lake.read_manifest("sft_dataset")["path"],
        "shards_dir": str(lake.partition_dir("tokenized_shards")),
        "lineage": dict(_lineage(context, lake), sft_dataset_hash=lake.read_manifest("sft_dataset")["content_hash"])},
    description="The base model fine-tuned on the chat data: loss on assistant tokens (and end-of-turn) only, packed rows, "
                "with pretraining windows rehearsed in every batch (`pretrain_mix`) so it keeps what pretraining taught.")
aligned_model = model_asset(
    "aligned_model", "dpo", DpoConfig, deps=["sft_model", "preference_dataset"], automation_condition=FOLLOW,
    inputs=_sft_and_pairs,
    description="The SFT model aligned with DPO (sigmoid loss + chosen NLL, frozen SFT reference); held-out reward accuracy "
                "in metadata.")

reward_model = model_asset(
    "reward_model", "reward", RewardConfig, deps=["sft_model", "preference_dataset"], automation_condition=FOLLOW,
    inputs=_sft_and_pairs,
    description="A Bradley-Terry reward model: the SFT transformer with a scalar head, trained on the ranked pairs; held-out "
                "pairwise accuracy (whole prompts held out), reward distributions of chosen vs rejected answers and a "
                "calibration table in metadata. The reward for RL fine-tuning (no RL stage is built yet).")

COMMON = dict(group="training", kinds={"python", "json"}, automation_condition=FOLLOW)
training_assets = [base_model, *stage_assets(SFT_DATASET, **COMMON), sft_model,
                   *stage_assets(PREFERENCE_DATASET, deps=list(PREFERENCE_DATASET.inputs), **COMMON), aligned_model, reward_model]
