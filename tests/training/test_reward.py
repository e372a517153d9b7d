import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pipelines.sample.chat import write_chat_data
from training.datasets import split_by_prompt
from training.pretrain import PretrainConfig, PretrainJob, run_pretrain
from training.reward import RewardConfig, RewardJob, bradley_terry_loss, calibration, rewards, run_reward
from training.sft import encode_conversation


def test_bradley_terry_loss_matches_a_hand_computation():
    chosen, rejected = torch.tensor([1.0, -0.5]), torch.tensor([0.0, 0.5])
    loss, m = bradley_terry_loss(chosen, rejected, center_coef=0.1)
    # margins 1.0 and -1.0: -log sigmoid(1) = log(1 + e^-1), -log sigmoid(-1) = log(1 + e); mean squared reward (1 + .25 + 0 + .25) / 4
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(1.0))) / 2 + 0.1 * 1.5 / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m == {"accuracy": 0.5, "margin": 0.0}
    plain, _ = bradley_terry_loss(chosen, rejected, center_coef=0.0)
    assert plain.item() == pytest.approx(expected - 0.0375, rel=1e-6)


def test_calibration_folds_each_pair_onto_the_preferred_answer():
    margins = np.array([0.1, -0.1, 3.0, 3.0, -3.0])  # sigmoid(0.1) = 0.525, sigmoid(3) = 0.953
    rows = calibration(margins)
    assert rows == [{"bin": "0.5-0.6", "pairs": 2, "predicted": 0.525, "observed": 0.5},
                    {"bin": "0.9-1.0", "pairs": 3, "predicted": 0.953, "observed": 0.667}]


def test_held_out_pairs_never_share_a_prompt_with_training_pairs():
    pairs = [(f"q{i % 7}", i) for i in range(30)]  # 7 prompts, each ranked 4-5 times
    val, train = split_by_prompt(pairs, val_fraction=0.2, seed=3)
    prompt_of = dict((item, p) for p, item in pairs)
    assert {prompt_of[i] for i in val}.isdisjoint(prompt_of[i] for i in train)
    assert sorted(val + train) == list(range(30)) and 4 <= len(val) <= 10
    assert split_by_prompt(pairs, 0.2, 3) == (val, train)  # seeded
    assert split_by_prompt([("only", 1), ("only", 2)], 0.5, 0)[1]  # a single prompt still leaves training data


@pytest.fixture(scope="module")
def reward_run(token_lake, tmp_path_factory):
    root = tmp_path_factory.mktemp("reward")
    chat = write_chat_data(root / "chat")
    base = run_pretrain(PretrainJob(shards_dir=str(token_lake.partition_dir("tokenized_shards")), out_dir=str(root / "base"),
                                    config=PretrainConfig(preset="test", max_steps=6, eval_every=3)), log=lambda m: None)
    job = RewardJob(sft_dir=base["path"], pairs_path=str(chat["preferences"]), out_dir=str(root / "reward"),
                    config=RewardConfig(steps=100, batch_size=8, lr=1e-3))
    return job, run_reward(job, log=lambda m: None)


def test_reward_model_learns_the_pairs_and_saves_a_scalar_head_checkpoint(reward_run):
    job, result = reward_run
    m = result["metrics"]
    losses = [h["train_loss"] for h in result["history"]]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.05  # it learns (single batches are noisy)
    rows = len(Path(job.pairs_path).read_text().splitlines())
    assert m["heldout_pairs"] > 0 and m["train_pairs"] + m["heldout_pairs"] + m["pairs_longer_than_context"] == rows
    assert sum(row["pairs"] for row in result["calibration"]) == m["heldout_pairs"]
    model = AutoModelForSequenceClassification.from_pretrained(job.out_dir)  # a Hugging Face checkpoint with a scalar head
    assert model.config.num_labels == 1
    tok = AutoTokenizer.from_pretrained(job.out_dir)
    seq = encode_conversation(tok, [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi!"}], 64)[0]
    alone = rewards(model.eval(), [seq[:-2]], tok.pad_token_id, "cpu")
    padded = rewards(model, [seq[:-2], seq], tok.pad_token_id, "cpu")  # read at the last real token, not at the padding
    assert padded[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    lineage = json.loads(Path(job.out_dir, "lineage.json").read_text())
    assert lineage["stage"] == "reward" and lineage["config"]["center_coef"] == 0.01


def test_reward_training_is_deterministic(reward_run, tmp_path):
    job, result = reward_run
    again = run_reward(RewardJob(sft_dir=job.sft_dir, pairs_path=job.pairs_path, out_dir=str(tmp_path / "again"), config=job.config),
                       log=lambda m: None)
    assert again["metrics"]["checkpoint_hash"] == result["metrics"]["checkpoint_hash"]
