"""Training assets: base model, SFT data + model, preference data + aligned model.

Each model trains in a separate process launched through dagster-pipes
(`python -m training.cli ...`): logs and metrics stream into the run, the child reports
the materialization (loss curve, metrics, lineage), and cancelling the run stops it.
Models share the `training` pool, so one trains at a time (`dagster.yaml`).
"""

import json
import sys
from pathlib import Path
from typing import Literal, Optional

import dagster as dg

from orchestration.assets.ingest import OWNERS
from orchestration.automation import FOLLOW, WEEKLY
from orchestration.assets.tokens import tokenized_shards, tokenizer
from orchestration.resources import InputsResource, LakeResource
from pipelines.lake import atomic_write_bytes
from training.sft import decontaminate, load_jsonl

COMMON = dict(group_name="training", owners=OWNERS, tags={"stage": "training"})
MODEL = dict(kinds={"pytorch", "huggingface"}, pool="training", **COMMON)
FOLLOWING = dict(automation_condition=FOLLOW)


def _model_dir(lake: LakeResource, name: str) -> Path:
    return lake.lake.root / "models" / name


def _run_training(context, pipes: dg.PipesSubprocessClient, stage: str, job: dict, job_path: Path) -> dg.MaterializeResult:
    atomic_write_bytes(job_path, json.dumps(job, indent=2, default=str).encode())
    return pipes.run(context=context, command=[sys.executable, "-m", "training.cli", stage, "--config", str(job_path)],
                     extras={"job": str(job_path)}).get_materialize_result()


def _lineage(context, lake: LakeResource) -> dict:
    shards = lake.lake.read_manifest("tokenized_shards")
    return {"run_id": context.run.run_id, "asset": context.asset_key.to_user_string(),
            "code_version": context.assets_def.code_versions_by_key[context.asset_key],
            "shards_hash": shards["content_hash"], "mixture_hash": shards["mixture_hash"],
            "mixture_weights": shards["mixture_weights"], "tokenizer_hash": shards["tokenizer_hash"],
            "upstream": shards["inputs"], "shard_tokens": shards["tokens"]}


class PretrainConfig(dg.Config):
    """Model preset (test, demo, gpu-125m, gpu-350m, gpu-1b); 0 = the preset's default."""

    preset: str = "demo"
    max_steps: int = 0
    batch_size: int = 0
    grad_accum: int = 0
    lr: float = 0.0
    eval_every: int = 50
    checkpoint_every: int = 50
    seed: int = 0
    compile: bool = False
    device: str = "auto"


@dg.asset(deps=[tokenized_shards, tokenizer], code_version="1", automation_condition=WEEKLY, **MODEL)
def base_model(context: dg.AssetExecutionContext, config: PretrainConfig, lake: LakeResource,
               pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    """A Llama-style causal LM pretrained on the token shards; Hugging Face checkpoint with lineage.json.

    Resumable: model, optimizer, step and RNG are saved every `checkpoint_every` steps, so a
    retried run continues where the killed one stopped."""
    out = _model_dir(lake, "base_model")
    job = {**config.model_dump(), "shards_dir": str(lake.lake.partition_dir("tokenized_shards")),
           "tokenizer_dir": str(lake.lake.partition_dir("tokenizer")), "out_dir": str(out / "checkpoint"),
           "lineage": _lineage(context, lake)}
    return _run_training(context, pipes_subprocess_client, "pretrain", job, out / "job.json")


class ChatDataConfig(dg.Config):
    """JSONL inputs; None = the bundled sample under CHAT_DIR (data/sample/chat)."""

    path: Optional[str] = None
    eval_prompts_path: Optional[str] = None
    ngram: int = 8


def _chat_paths(config: ChatDataConfig, inputs: InputsResource, default: str) -> tuple[Path, Path]:
    return Path(config.path or inputs.chat_path / default), Path(config.eval_prompts_path or inputs.chat_path / "eval_prompts.jsonl")


def _write_jsonl(lake: LakeResource, asset: str, rows: list[dict], manifest: dict) -> Path:
    path = lake.lake.partition_dir(asset) / "data.jsonl"
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    import xxhash

    manifest = dict(manifest, path=str(path), rows=len(rows), content_hash=xxhash.xxh3_128_hexdigest(path.read_bytes()))
    lake.lake.write_manifest(asset, None, manifest)
    return path


@dg.asset(kinds={"python", "json"}, code_version="1", **FOLLOWING, **COMMON)
def sft_dataset(context: dg.AssetExecutionContext, config: ChatDataConfig, lake: LakeResource,
                inputs: InputsResource) -> dg.MaterializeResult:
    """Instruction conversations ({"messages": [{"role", "content"}, ...]}, multi-turn allowed),
    decontaminated against the evaluation prompts (word n-gram overlap)."""
    path, eval_path = _chat_paths(config, inputs, "sft.jsonl")
    rows = load_jsonl(path, ("messages",))
    evals = [r["prompt"] for r in load_jsonl(eval_path, ("prompt",))] if eval_path.exists() else []
    kept, dropped = decontaminate(rows, lambda c: [m["content"] for m in c["messages"] if m["role"] == "user"], evals, config.ngram)
    out = _write_jsonl(lake, "sft_dataset", kept, {"source": str(path), "eval_prompts": str(eval_path), "decontaminated": len(dropped)})
    m = lake.lake.read_manifest("sft_dataset")
    return dg.MaterializeResult(metadata={"conversations": len(kept), "decontaminated": len(dropped),
                                          "multi_turn": sum(len(c["messages"]) > 2 for c in kept), "path": dg.MetadataValue.path(str(out)),
                                          "preview": dg.MetadataValue.json(kept[:3])}, data_version=dg.DataVersion(m["content_hash"]))


class SftConfig(dg.Config):
    steps: int = 150
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"


@dg.asset(deps=[base_model, sft_dataset], code_version="1", **FOLLOWING, **MODEL)
def sft_model(context: dg.AssetExecutionContext, config: SftConfig, lake: LakeResource, inputs: InputsResource,
              pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    """The base model fine-tuned on the chat data: loss on assistant tokens (and end-of-turn) only, packed rows."""
    out = _model_dir(lake, "sft_model")
    data = lake.lake.read_manifest("sft_dataset")
    job = {"base_dir": str(_model_dir(lake, "base_model") / "checkpoint"), "data_path": data["path"],
           "eval_prompts_path": data["eval_prompts"] if Path(data["eval_prompts"]).exists() else None,
           "out_dir": str(out / "checkpoint"), **config.model_dump(),
           "lineage": dict(_lineage(context, lake), sft_dataset_hash=data["content_hash"])}
    return _run_training(context, pipes_subprocess_client, "sft", job, out / "job.json")


class PreferenceConfig(ChatDataConfig):
    """`file`: pairs from JSONL (prompt, chosen, rejected); `sampled`: sample the SFT model k times per
    prompt and rank by rule; `both`: the union."""

    mode: Literal["file", "sampled", "both"] = "file"
    samples_per_prompt: int = 4


@dg.asset(deps=[sft_model], kinds={"python", "json"}, code_version="1", **FOLLOWING, **COMMON)
def preference_dataset(context: dg.AssetExecutionContext, config: PreferenceConfig, lake: LakeResource,
                       inputs: InputsResource) -> dg.MaterializeResult:
    """Preference pairs for DPO, decontaminated against the evaluation prompts."""
    from training.dpo import sample_pairs

    path, eval_path = _chat_paths(config, inputs, "preferences.jsonl")
    rows = load_jsonl(path, ("prompt", "chosen", "rejected")) if config.mode in ("file", "both") else []
    if config.mode in ("sampled", "both"):
        prompts = sorted({r["prompt"] for r in load_jsonl(path, ("prompt",))})
        rows += sample_pairs(str(_model_dir(lake, "sft_model") / "checkpoint"), prompts, k=config.samples_per_prompt)
    evals = [r["prompt"] for r in load_jsonl(eval_path, ("prompt",))] if eval_path.exists() else []
    kept, dropped = decontaminate(rows, lambda r: [r["prompt"]], evals, config.ngram)
    out = _write_jsonl(lake, "preference_dataset", kept, {"source": str(path), "mode": config.mode, "eval_prompts": str(eval_path),
                                                           "decontaminated": len(dropped)})
    m = lake.lake.read_manifest("preference_dataset")
    return dg.MaterializeResult(metadata={"pairs": len(kept), "decontaminated": len(dropped), "mode": config.mode,
                                          "path": dg.MetadataValue.path(str(out)), "preview": dg.MetadataValue.json(kept[:3])},
                                data_version=dg.DataVersion(m["content_hash"]))


class DpoConfig(dg.Config):
    beta: float = 0.1
    rpo_alpha: float = 1.0  # NLL of the chosen answers added to the DPO loss; 0 = plain DPO
    steps: int = 60
    batch_size: int = 8
    lr: float = 2e-4
    seed: int = 0
    device: str = "auto"


@dg.asset(deps=[sft_model, preference_dataset], code_version="1", **FOLLOWING, **MODEL)
def aligned_model(context: dg.AssetExecutionContext, config: DpoConfig, lake: LakeResource,
                  pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    """The SFT model aligned with DPO (sigmoid loss + chosen NLL, frozen SFT reference); held-out reward accuracy in metadata."""
    out = _model_dir(lake, "aligned_model")
    prefs = lake.lake.read_manifest("preference_dataset")
    job = {"sft_dir": str(_model_dir(lake, "sft_model") / "checkpoint"), "pairs_path": prefs["path"],
           "out_dir": str(out / "checkpoint"), **config.model_dump(),
           "lineage": dict(_lineage(context, lake), preference_dataset_hash=prefs["content_hash"])}
    return _run_training(context, pipes_subprocess_client, "dpo", job, out / "job.json")


training_assets = [base_model, sft_dataset, sft_model, preference_dataset, aligned_model]
