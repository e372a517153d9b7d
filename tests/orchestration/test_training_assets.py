import json
from pathlib import Path

import dagster as dg

from orchestration.defs.tokens import token_assets
from orchestration.defs.training import training_assets
from orchestration.factory import assets_only
from orchestration.resources import InputsResource, LakeResource
from pipelines.sample.chat import write_chat_data
from training.checkpoint import checkpoint_hash
from training.plots import INLINE_LIMIT

FAST = {"ops": {"base_model": {"config": {"preset": "test", "max_steps": 6, "eval_every": 3}},
                "sft_model": {"config": {"steps": 4, "batch_size": 4}},
                "dpo_model": {"config": {"steps": 3, "batch_size": 4}}, "reward_model": {"config": {"steps": 3, "batch_size": 4}},
                "rl_model": {"config": {"steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8,
                                        "heldout_samples": 1}}}}


def test_training_assets_run_through_pipes_with_metadata_and_lineage(token_lake, tmp_path):
    chat = write_chat_data(tmp_path / "chat")
    resources = {"lake": LakeResource(root=str(token_lake.root)),
                 "inputs": InputsResource(crawl_dir=str(tmp_path), sources_dir=str(tmp_path), chat_dir=str(chat["sft"].parent)),
                 "pipes_subprocess_client": dg.PipesSubprocessClient()}
    assets = [*token_assets, *training_assets]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, selection=assets_only(training_assets), instance=instance, resources=resources, run_config=FAST)
        assert result.success
        base = result.asset_materializations_for_node("base_model")[0].metadata
        assert base["final_val_loss"].value < base["unigram_baseline"].value + 5  # trained (tiny run), numbers reported
        assert base["loss_curve"].value.startswith("![loss curve](data:image/svg+xml;base64,")
        assert len(base["loss_curve"].value) < INLINE_LIMIT  # the asset page shows it without a click
        assert base["lineage"].value["shards_hash"] == token_lake.read_manifest("tokenized_shards")["content_hash"]
        dpo = result.asset_materializations_for_node("dpo_model")[0].metadata
        assert "heldout_reward_accuracy" in dpo
        ckpt = Path(dpo["checkpoint"].value)
        lineage = json.loads((ckpt / "lineage.json").read_text())
        assert lineage["stage"] == "dpo" and lineage["mixture_weights"] and lineage["preference_dataset_hash"]
        import subprocess

        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode == 0:  # a git checkout: the lineage names the code that made the model
            assert lineage["git_commit"].removesuffix("-dirty") == head.stdout.strip()
        else:
            assert lineage["git_commit"] is None
        reward = result.asset_materializations_for_node("reward_model")[0].metadata
        assert {"heldout_pairwise_accuracy", "heldout_reward_chosen_mean", "heldout_reward_rejected_mean"} <= set(reward)
        assert reward["calibration"].value.records  # a table, shown on the asset page
        assert json.loads((token_lake.checkpoint_dir("reward_model") / "lineage.json").read_text())["stage"] == "reward"
        assert result.asset_materializations_for_node("sft_dataset")[0].metadata["decontaminated"].value > 0
        mat = result.asset_materializations_for_node("dpo_model")[0]
        assert mat.tags["dagster/data_version"] == checkpoint_hash(ckpt)
        rl = result.asset_materializations_for_node("rl_model")[0].metadata
        assert {"heldout_reward", "heldout_reward_before", "heldout_kl", "kl_bound", "heldout_reward_length_correlation"} <= set(rl)
        assert rl["reward_curve"].value.startswith("![reward curve](data:image/svg+xml;base64,")
        rl_lineage = json.loads((token_lake.checkpoint_dir("rl_model") / "lineage.json").read_text())
        assert rl_lineage["stage"] == "rl"
        assert rl_lineage["reference_checkpoint_hash"] == checkpoint_hash(token_lake.checkpoint_dir("sft_model"))  # start_from default
        aligned = result.asset_materializations_for_node("aligned_model")[0]  # the default method: DPO
        assert aligned.tags["dagster/data_version"] == checkpoint_hash(ckpt) and aligned.metadata["method"].value == "dpo"
        job = json.loads(token_lake.training_job_path("base_model").read_text())
        assert job["config"] == {"preset": "test", "max_steps": 6, "batch_size": None, "grad_accum": None, "lr": None,
                                 "eval_every": 3, "checkpoint_every": 50, "seed": 0, "compile": False, "device": "auto"}
        base_lineage = json.loads((token_lake.checkpoint_dir("base_model") / "lineage.json").read_text())
        assert base_lineage["config"] == job["config"] and base_lineage["train_config"]["max_steps"] == 6
