"""Training assets: base model, SFT data + model, preference data, the DPO, reward and RL models, and the aligned model
(the chosen variant).

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
from training.aligned import ALIGNED
from training.cli import JOBS
from training.datasets import PREFERENCE_DATASET, SFT_DATASET
from training.dpo import DpoConfig
from training.feedback import HUMAN_PREFERENCES, RANKING_TASKS
from training.pretrain import PretrainConfig
from training.reward import RewardConfig
from training.rl import RlConfig
from training.sft import SftConfig


def _lineage(context: dg.AssetExecutionContext, lake: Lake) -> dict:
    shards = lake.read_manifest("tokenized_shards")
    return {"run_id": context.run.run_id, "asset": context.asset_key.to_user_string(), "lake_root": str(lake.root),
            "code_version": context.assets_def.code_versions_by_key[context.asset_key], "git_commit": code_commit(),
            "shards_hash": shards["content_hash"], "mixture_hash": shards["mixture_hash"],
            "mixture_weights": shards["mixture_weights"], "tokenizer_hash": shards["tokenizer_hash"],
            "upstream": shards["inputs"], "shard_tokens": shards["tokens"]}


def _pairs(context: dg.AssetExecutionContext, lake: Lake) -> dict:
    pairs = lake.read_manifest("preference_dataset")
    return {"pairs_path": pairs["path"], "lineage": dict(_lineage(context, lake), preference_dataset_hash=pairs["content_hash"])}


def _sft_and_pairs(context: dg.AssetExecutionContext, lake: Lake, config) -> dict:
    """What both pair-trained stages (DPO, the reward model) train from: the SFT checkpoint and the ranked pairs."""
    return {"sft_dir": str(lake.checkpoint_dir("sft_model")), **_pairs(context, lake)}


def _rl_inputs(context: dg.AssetExecutionContext, lake: Lake, config: RlConfig) -> dict:
    """The policy's start (SFT or DPO model, per `start_from`), the reward model, and the prompts of the ranked pairs."""
    return {"start_dir": str(lake.checkpoint_dir(config.start_from)), "reward_dir": str(lake.checkpoint_dir("reward_model")),
            **_pairs(context, lake)}


def model_asset(name: str, cli_stage: str, config_cls: type, inputs: Callable[[dg.AssetExecutionContext, Lake, object], dict],
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
        library_config = to_library(config, config_cls)
        job = {**inputs(context, lake.lake, library_config), "out_dir": str(lake.lake.checkpoint_dir(name)),
               "config": config_to_dict(library_config)}
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
    inputs=lambda context, lake, config: {"shards_dir": str(lake.partition_dir("tokenized_shards")), "lineage": _lineage(context, lake)},
    description="A Llama-style causal LM pretrained on the token shards; Hugging Face checkpoint with lineage.json.\n\n"
                "Resumable: model, optimizer, step and RNG are saved every `checkpoint_every` steps, so a retried run "
                "continues where the killed one stopped.")
sft_model = model_asset(
    "sft_model", "sft", SftConfig, deps=["base_model", "sft_dataset", "tokenized_shards"], automation_condition=FOLLOW,
    inputs=lambda context, lake, config: {
        "base_dir": str(lake.checkpoint_dir("base_model")), "data_path": lake.read_manifest("sft_dataset")["path"],
        "shards_dir": str(lake.partition_dir("tokenized_shards")),
        "lineage": dict(_lineage(context, lake), sft_dataset_hash=lake.read_manifest("sft_dataset")["content_hash"])},
    description="The base model fine-tuned on the chat data: loss on assistant tokens (and end-of-turn) only, packed rows, "
                "with pretraining windows rehearsed in every batch (`pretrain_mix`) so it keeps what pretraining taught.")
dpo_model = model_asset(
    "dpo_model", "dpo", DpoConfig, deps=["sft_model", "preference_dataset"], automation_condition=FOLLOW,
    inputs=_sft_and_pairs,
    description="The SFT model aligned with DPO (sigmoid loss + chosen NLL, frozen SFT reference); held-out reward accuracy "
                "in metadata.")
def _reward_inputs(context: dg.AssetExecutionContext, lake: Lake, config) -> dict:
    """The pair-trained inputs plus the pairs people ranked (human_preferences), when there are any."""
    inputs = _sft_and_pairs(context, lake, config)
    if lake.has_manifest("human_preferences") and (human := lake.read_manifest("human_preferences"))["pairs"]:
        inputs["human_pairs_path"] = human["path"]
        inputs["lineage"]["human_preferences_hash"] = human["content_hash"]
    return inputs


reward_model = model_asset(
    "reward_model", "reward", RewardConfig, deps=["sft_model", "preference_dataset", "human_preferences"], automation_condition=FOLLOW,
    inputs=_reward_inputs,
    description="A Bradley-Terry reward model: the SFT transformer with a scalar head, trained on the ranked pairs and the pairs "
                "people ranked (human_preferences); held-out "
                "pairwise accuracy (whole prompts held out), reward distributions of chosen vs rejected answers and a "
                "calibration table in metadata. The reward `rl_model` optimizes.")
rl_model = model_asset(
    "rl_model", "rl", RlConfig, deps=["sft_model", "dpo_model", "reward_model", "preference_dataset"], automation_condition=FOLLOW,
    inputs=_rl_inputs,
    description="RLHF: the policy (from the SFT model, or the DPO model with `start_from: dpo_model`) optimized against the "
                "reward model with RLOO and a KL penalty to where it started. Per-step reward, KL, entropy, answer length and "
                "clip fraction in the run's logs; held-out reward, KL (against `kl_bound`) and reward-hacking signals in metadata.")

COMMON = dict(group="training", kinds={"python", "json"}, automation_condition=FOLLOW)
training_assets = [base_model, *stage_assets(SFT_DATASET, **COMMON), sft_model,
                   *stage_assets(PREFERENCE_DATASET, deps=list(PREFERENCE_DATASET.inputs), **COMMON), dpo_model,
                   *stage_assets(RANKING_TASKS, deps=list(RANKING_TASKS.inputs), **dict(COMMON, kinds={"python", "labelstudio"})),
                   *stage_assets(HUMAN_PREFERENCES, deps=list(HUMAN_PREFERENCES.inputs),
                                 **dict(COMMON, kinds={"python", "labelstudio"})),
                   reward_model, rl_model,
                   *stage_assets(ALIGNED, deps=list(ALIGNED.inputs), group="training", kinds={"huggingface"}, automation_condition=FOLLOW,
                                 freshness_policy=WEEKLY_FRESHNESS)]
