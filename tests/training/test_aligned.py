import json

import pytest

from pipelines.contract import run_stage
from pipelines.lake import Lake
from training.aligned import ALIGNED
from training.checkpoint import checkpoint_hash


def _checkpoint(lake: Lake, name: str, weights: bytes, **lineage) -> None:
    d = lake.checkpoint_dir(name)
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(weights)
    (d / "lineage.json").write_text(json.dumps({"asset": name, **lineage}))


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(tmp_path / "lake")
    _checkpoint(lake, "sft_model", b"sft", stage="sft")
    _checkpoint(lake, "dpo_model", b"dpo", stage="dpo", reference_checkpoint_hash=checkpoint_hash(lake.checkpoint_dir("sft_model")))
    _checkpoint(lake, "rl_model", b"rl", stage="rl", reference_checkpoint_hash=checkpoint_hash(lake.checkpoint_dir("sft_model")))
    return lake


@pytest.mark.parametrize("method, variant", [("dpo", "dpo_model"), ("rlhf", "rl_model")])
def test_the_aligned_model_is_the_chosen_variant_with_the_method_recorded(lake, method, variant):
    manifest = run_stage(ALIGNED, lake, log=lambda m: None, method=method)
    out = lake.checkpoint_dir("aligned_model")
    assert manifest["content_hash"] == checkpoint_hash(lake.checkpoint_dir(variant)) and manifest["selected_from"] == variant
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["alignment_method"] == method and lineage["stage"] == variant.removesuffix("_model")
    assert "alignment_method" not in json.loads((lake.checkpoint_dir(variant) / "lineage.json").read_text())  # the variant is untouched


def test_a_method_the_trained_variants_cannot_honour_says_what_to_rematerialize(lake):
    with pytest.raises(ValueError, match="rematerialize rl_model with start_from='dpo_model', or choose method 'rlhf'"):
        run_stage(ALIGNED, lake, log=lambda m: None, method="dpo_then_rlhf")
    (lake.checkpoint_dir("rl_model") / "lineage.json").unlink()
    with pytest.raises(FileNotFoundError, match="needs rl_model, which has not been materialized"):
        run_stage(ALIGNED, lake, log=lambda m: None, method="rlhf")
