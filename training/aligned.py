"""The aligned model: the alignment method the user chose, as one checkpoint the gates judge and promotion ships.

    dpo            -> dpo_model (DPO on the ranked pairs, from the SFT model)
    rlhf           -> rl_model trained from sft_model (reward model + RLOO)
    dpo_then_rlhf  -> rl_model trained from dpo_model

Every variant is trained and evaluated, so the report shows them side by side; this stage only
selects. It refuses a choice the trained variants cannot honour (RLHF chosen, but `rl_model`
started from the DPO model, or the other way round) and says which asset to rematerialize. The
checkpoint is a copy of the chosen variant's (not hard links: a tool saving into one directory
would silently change the other) whose lineage.json also records the method.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.contract import Stage, StageContext, config_to_dict, param
from pipelines.lake import Lake, atomic_directory
from training.checkpoint import checkpoint_hash

METHODS = {"dpo": ("dpo_model", None), "rlhf": ("rl_model", "sft_model"), "dpo_then_rlhf": ("rl_model", "dpo_model")}


@dataclass(frozen=True)
class AlignConfig:
    """Which alignment method makes the aligned (candidate) model."""

    method: Literal["dpo", "rlhf", "dpo_then_rlhf"] = param("dpo", "dpo, rlhf (reward model + RL from SFT) or dpo_then_rlhf "
                                                                   "(RL from the DPO model; set rl_model's start_from to dpo_model)")


def chosen_checkpoint(lake: Lake, method: str) -> tuple[str, Path, dict]:
    """The trained variant `method` names (asset, checkpoint, lineage), after checking it was trained the way the method says."""
    asset, start = METHODS[method]
    src = lake.checkpoint_dir(asset)
    if not (src / "lineage.json").exists():
        raise FileNotFoundError(f"method {method!r} needs {asset}, which has not been materialized ({src} is missing)")
    lineage = json.loads((src / "lineage.json").read_text())
    if start is not None:
        started = lineage.get("reference_checkpoint_hash")
        expected = checkpoint_hash(lake.checkpoint_dir(start))
        if started != expected:
            other = next(m for m, (a, s) in METHODS.items() if a == asset and s != start)
            raise ValueError(f"method {method!r} needs rl_model trained from {start}, but the current rl_model started from another "
                             f"checkpoint ({str(started)[:12]}, as method {other!r} does); rematerialize rl_model with "
                             f"start_from={start!r}, or choose method {other!r}")
    return asset, src, lineage


def select_aligned(ctx: StageContext, cfg: AlignConfig) -> dict:
    lake = ctx.lake
    asset, src, lineage = chosen_checkpoint(lake, cfg.method)
    out = lake.checkpoint_dir("aligned_model")
    with atomic_directory(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / "lineage.json").write_text(json.dumps(dict(lineage, alignment_method=cfg.method, selected_from=asset),
                                                     indent=2, sort_keys=True))
    manifest = {"asset": "aligned_model", "path": str(out), "method": cfg.method, "selected_from": asset,
                "content_hash": checkpoint_hash(out), "config": config_to_dict(cfg)}
    lake.write_manifest("aligned_model", None, manifest)
    ctx.log(f"aligned_model = {asset} ({cfg.method})")
    return manifest


ALIGNED = Stage(name="aligned_model", config=AlignConfig, run=select_aligned, inputs=("dpo_model", "rl_model"),
                description="The aligned model the gates judge and promotion ships: the variant of the chosen method (DPO, RLHF, or "
                            "DPO then RLHF). Every variant is evaluated, so the report compares them side by side.")
