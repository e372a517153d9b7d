import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from pipelines.sample.chat import write_chat_data
from training.pretrain import PretrainConfig, PretrainJob, run_pretrain
from training.reward import HELDOUT_PROMPTS, RewardConfig, RewardJob, run_reward
from training.rl import RlConfig, RlJob, clipped_policy_loss, rloo_advantages, run_rl, split_prompts


def test_rloo_advantage_is_the_score_minus_the_mean_of_the_other_answers():
    adv = rloo_advantages(torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]))
    # 1 - (2+3)/2 = -1.5, 2 - (1+3)/2 = 0, 3 - (1+2)/2 = 1.5; equal scores carry no signal
    assert adv.tolist() == [[-1.5, 0.0, 1.5], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("advantage, expected_loss", [(1.0, -0.85), (-1.0, 1.15)])
def test_clipped_surrogate_matches_a_hand_computation(advantage, expected_loss):
    # ratios 1.5, 0.5 and a masked-out 9.0, eps 0.2:
    #  A = +1: min(1.5, 1.2) = 1.2 (clipped), min(0.5, 0.8) = 0.5  -> -(1.2 + 0.5) / 2 = -0.85
    #  A = -1: min(-1.5, -1.2) = -1.5, min(-0.5, -0.8) = -0.8 (clipped) -> (1.5 + 0.8) / 2 = 1.15
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 9.0]]))
    loss, m = clipped_policy_loss(new, old, torch.tensor([advantage]), torch.tensor([[1.0, 1.0, 0.0]]), clip_eps=0.2, normaliser=2)
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    assert m["clip_fraction"] == 0.5


def test_on_policy_gradient_is_reinforce_with_the_advantage():
    """At ratio 1 (first pass) the surrogate's gradient is -A x grad log pi / normaliser."""
    theta = torch.tensor([0.3, -0.2], requires_grad=True)
    logp = torch.log_softmax(theta, 0)[None, :1]  # log pi(token 0)
    loss, _ = clipped_policy_loss(logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 1), 0.2, normaliser=4)
    loss.backward()
    p0 = float(torch.softmax(theta.detach(), 0)[0])
    assert theta.grad.tolist() == pytest.approx([-2.0 * (1 - p0) / 4, -2.0 * -(1 - p0) / 4], rel=1e-5)


@pytest.fixture(scope="module")
def rl_inputs(token_lake, tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    chat = write_chat_data(root / "chat")
    base = run_pretrain(PretrainJob(shards_dir=str(token_lake.partition_dir("tokenized_shards")), out_dir=str(root / "base"),
                                    config=PretrainConfig(preset="test", max_steps=6, eval_every=3)), log=lambda m: None)
    reward = run_reward(RewardJob(sft_dir=base["path"], pairs_path=str(chat["preferences"]), out_dir=str(root / "reward"),
                                  config=RewardConfig(steps=30, lr=1e-3)), log=lambda m: None)
    return base["path"], reward["path"], str(chat["preferences"]), root


def _job(rl_inputs, out: str, **config) -> RlJob:
    start, reward, pairs, root = rl_inputs
    return RlJob(start_dir=start, reward_dir=reward, pairs_path=pairs, out_dir=str(root / out),
                 config=RlConfig(**{"steps": 3, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8,
                                    "heldout_samples": 1, "lr": 1e-3, **config}))


def test_rl_holds_out_the_reward_models_held_out_prompts(rl_inputs):
    held, train = split_prompts(_job(rl_inputs, "unused"))
    assert held == json.loads(Path(rl_inputs[1], HELDOUT_PROMPTS).read_text())
    assert train and not set(held) & set(train)


def test_rl_run_logs_each_step_and_saves_a_policy_with_lineage(rl_inputs):
    job = _job(rl_inputs, "policy")
    logged = []
    result = run_rl(job, log=logged.append)
    for record in result["history"]:
        assert {"reward", "kl", "entropy", "response_length", "clip_fraction", "kl_coef", "unfinished"} <= set(record)
    assert result["history"][0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first samples come from the reference itself
    assert "val_reward" in logged[-1] and logged[0]["event"] == "heldout_before"
    m = result["metrics"]
    assert m["kl_within_bound"] == int(m["heldout_kl"] <= m["kl_bound"]) and m["heldout_kl"] >= 0  # exact KL: never negative
    lineage = json.loads(Path(job.out_dir, "lineage.json").read_text())
    assert lineage["stage"] == "rl" and lineage["reward_checkpoint"] == job.reward_dir
    AutoModelForCausalLM.from_pretrained(job.out_dir)  # a Hugging Face checkpoint
    again = run_rl(_job(rl_inputs, "policy-again"), log=lambda r: None)
    assert again["metrics"]["checkpoint_hash"] == m["checkpoint_hash"]  # seeded sampling and updates


def test_a_step_over_the_kl_bound_raises_the_penalty_and_one_well_inside_lowers_it_back(rl_inputs):
    bound, configured = 1e-9, 0.1
    result = run_rl(_job(rl_inputs, "bounded", steps=5, kl_bound=bound, kl_coef=configured), log=lambda r: None)
    history = result["history"]
    for before, after in zip(history, history[1:]):
        if before["kl"] > bound:
            expected = before["kl_coef"] * 1.5
        elif before["kl"] < bound / 2:  # the sampled KL estimate can be negative
            expected = max(configured, before["kl_coef"] / 1.5)
        else:
            expected = before["kl_coef"]
        assert after["kl_coef"] == pytest.approx(expected)
    assert any(h["kl"] > bound for h in history[:-1]) and max(h["kl_coef"] for h in history) > configured
