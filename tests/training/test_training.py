import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipelines.contract import config_to_dict
from pipelines.sample.chat import write_chat_data
from training import loop
from training.datasets import decontaminate
from training.dpo import DpoConfig, DpoJob, dpo_loss, rank_by_rule, rpo_loss, run_dpo
from training.fused_llama import FusedLlama
from training.pretrain import PretrainConfig, PretrainJob, build_model, run_pretrain
from training.sft import SftConfig, SftJob, encode_conversation, pack, run_sft


def _job(lake, out, lineage=None, **kw):
    return PretrainJob(shards_dir=str(lake.partition_dir("tokenized_shards")), out_dir=str(out),
                       config=PretrainConfig(preset="test", **kw), lineage=lineage)


def test_dpo_loss_matches_a_hand_computation():
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.0, -2.0])
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 1: 0.5*((-10+11) - (-12+11)) = 1.0 ; pair 2: 0.5*((-4+4.5) - (-3+2)) = 0.75
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-0.75))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["rewards/accuracy"] == 1.0 and m["rewards/chosen"] == pytest.approx((0.5 + 0.25) / 2)
    assert m["rewards/margins"] == pytest.approx((1.0 + 0.75) / 2)


def test_rpo_adds_the_per_token_nll_of_the_chosen_answers():
    pc, pr = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    rc, rr = torch.tensor([-11.0, -4.5]), torch.tensor([-11.0, -2.0])
    dpo, _ = dpo_loss(pc, pr, rc, rr, beta=0.5)
    loss, m = rpo_loss(pc, pr, rc, rr, torch.tensor([5, 2]), beta=0.5, alpha=0.5)
    # chosen NLL per token: 10/5 = 2 and 4/2 = 2, mean 2; times alpha 0.5 = 1.0
    assert m["nll/chosen"] == pytest.approx(2.0) and loss.item() == pytest.approx(dpo.item() + 1.0, rel=1e-6)
    plain, _ = rpo_loss(pc, pr, rc, rr, torch.tensor([5, 2]), beta=0.5, alpha=0.0)
    assert plain.item() == pytest.approx(dpo.item())


def test_gradient_accumulation_normalizes_by_all_tokens(token_lake):
    model, _ = build_model("test", str(token_lake.partition_dir("tokenizer")), seed=0)
    x = torch.randint(5, 500, (4, 17))
    y = x.clone()
    y[0, 3:] = -100  # uneven numbers of labelled tokens per micro-batch

    def grads(micro_batches):
        model.zero_grad()
        n = sum(int((yy[:, 1:] != -100).sum()) for _, yy in micro_batches)
        for xx, yy in micro_batches:
            (loop.token_loss_sum(model, xx, yy) / n).backward()
        return [p.grad.clone() for p in model.parameters()]

    whole = grads([(x, y)])
    split = grads([(x[:2], y[:2]), (x[2:], y[2:])])
    for a, b in zip(whole, split):
        assert torch.allclose(a, b, atol=1e-6)


def test_lr_schedule_and_no_decay_groups(token_lake):
    cfg = loop.TrainConfig(max_steps=100, batch_size=1, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert loop.lr_at(0, cfg) == pytest.approx(0.1) and loop.lr_at(9, cfg) == pytest.approx(1.0)
    assert loop.lr_at(100, cfg) == pytest.approx(0.1) and loop.lr_at(55, cfg) == pytest.approx(0.55)
    model, _ = build_model("test", str(token_lake.partition_dir("tokenizer")), seed=0)
    decay, no_decay = loop.param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and no_decay["weight_decay"] == 0
    assert any(p is model.model.embed_tokens.weight for p in no_decay["params"])
    fused = FusedLlama.from_hf(model)  # what pretraining and SFT actually train
    decay, no_decay = loop.param_groups(fused, 0.1)
    assert {id(p) for p in decay["params"]} == {id(m.weight) for layer in fused.layers for m in (layer.qkv, layer.o, layer.gate_up,
                                                                                                 layer.down)}
    assert any(p is fused.embed.weight for p in no_decay["params"]) and len(no_decay["params"]) == 2 + 2 * len(fused.layers)


def _cli(stage, job_path):
    return [sys.executable, "-m", "training.cli", stage, "--config", str(job_path)]


def test_killed_run_resumes_to_the_same_weights(token_lake, tmp_path):
    fields = config_to_dict(_job(token_lake, tmp_path / "x", max_steps=40, checkpoint_every=4, eval_every=20))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    straight = dict(fields, out_dir=str(tmp_path / "straight"))
    (tmp_path / "straight.json").write_text(json.dumps(straight))
    subprocess.run(_cli("pretrain", tmp_path / "straight.json"), check=True, env=env, capture_output=True)
    killed = dict(fields, out_dir=str(tmp_path / "killed"))
    (tmp_path / "killed.json").write_text(json.dumps(killed))
    proc = subprocess.Popen(_cli("pretrain", tmp_path / "killed.json"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed.state" / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["state"]["step"] >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(state.read_text())["state"]["step"]
    assert 12 <= stopped_at < 40 and not (tmp_path / "killed" / "model.safetensors").exists()
    out = subprocess.run(_cli("pretrain", tmp_path / "killed.json"), check=True, env=env, capture_output=True, text=True)
    assert f"event=resumed step={stopped_at}" in out.stdout
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


@pytest.fixture(scope="module")
def trained_models(token_lake, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    chat = write_chat_data(root / "chat")
    base = run_pretrain(_job(token_lake, root / "base", max_steps=8, eval_every=4, lineage={"shards_hash": "abc"}), log=lambda m: None)
    sft = run_sft(SftJob(base_dir=base["path"], data_path=str(chat["sft"]), out_dir=str(root / "sft"),
                         config=SftConfig(steps=6, batch_size=4, pretrain_mix=0.25),
                         shards_dir=str(token_lake.partition_dir("tokenized_shards"))), log=lambda m: None)
    dpo = run_dpo(DpoJob(sft_dir=sft["path"], pairs_path=str(chat["preferences"]), out_dir=str(root / "aligned"),
                         config=DpoConfig(steps=4, batch_size=4)), log=lambda m: None)
    return {"base": base, "sft": sft, "aligned": dpo}


def test_each_checkpoint_loads_with_transformers_and_generates(trained_models):
    for name, result in trained_models.items():
        path = Path(result["path"])
        assert not list(path.glob("*.bin")) and not list(path.glob("*.pt")) and (path / "model.safetensors").exists()
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        ids = tok.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
        assert out.shape[1] > ids["input_ids"].shape[1]
        lineage = json.loads((path / "lineage.json").read_text())
        assert lineage["stage"] == {"base": "pretrain", "sft": "sft", "aligned": "dpo"}[name]
        assert lineage["metrics"]["seconds"] > 0
    assert json.loads((Path(trained_models["base"]["path"]) / "lineage.json").read_text())["shards_hash"] == "abc"
    sft_lineage = json.loads((Path(trained_models["sft"]["path"]) / "lineage.json").read_text())
    assert sft_lineage["base_checkpoint_hash"] == trained_models["base"]["metrics"]["checkpoint_hash"]
    assert sft_lineage["config"] == {"steps": 6, "batch_size": 4, "lr": 1e-3, "pretrain_mix": 0.25, "val_fraction": 0.1, "seed": 0,
                                     "device": "auto"}


def test_sft_rehearsal_needs_the_pretraining_shards(trained_models, tmp_path):
    chat = write_chat_data(tmp_path / "chat")
    job = SftJob(base_dir=trained_models["base"]["path"], data_path=str(chat["sft"]), out_dir=str(tmp_path / "sft"),
                 config=SftConfig(steps=2, batch_size=4, pretrain_mix=0.25))
    with pytest.raises(ValueError, match="pretrain_mix = 0.25 needs the pretraining shards"):
        run_sft(job, log=lambda m: None)
    with pytest.raises(ValueError, match="pretrain_mix"):
        SftConfig(pretrain_mix=1.0)


def test_sft_masks_user_tokens_and_packs_whole_examples(token_lake):
    tok = AutoTokenizer.from_pretrained(str(token_lake.partition_dir("tokenizer")))
    conv = [{"role": "user", "content": "What river runs through Arlen?"}, {"role": "assistant", "content": "The Vessa."},
            {"role": "user", "content": "Thanks"}, {"role": "assistant", "content": "You're welcome."}]
    ids, labels = encode_conversation(tok, conv, 64)
    answer = tok.decode([i for i, label in zip(ids, labels) if label != -100])
    assert answer == "The Vessa.<|end|>You're welcome.<|end|>"
    x, y = pack([(ids, labels)] * 3 + [([1, 2, 3], [-100, 2, 3])], row_len=64, pad_id=tok.pad_token_id)
    assert x.shape[1] == 64 and (y != -100).sum() == 3 * sum(label != -100 for label in labels) + 2
    kept, dropped = decontaminate([{"p": "Name the river of Arlen please"}, {"p": "unrelated"}], lambda r: [r["p"]],
                                  ["name the river of arlen please now"], n=5)
    assert [r["p"] for r in dropped] == ["Name the river of Arlen please"]


def test_rule_ranking_prefers_on_topic_clean_answers():
    chosen, rejected = rank_by_rule("What is the population of Arlen?", ["Arlen has about 412,000 people.", "the the the", ""])
    assert chosen.startswith("Arlen") and rejected == ""


def test_checkpoint_states_the_models_context_and_leaves_generation_length_to_callers(token_lake, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM

    from training.checkpoint import save_checkpoint
    from training.presets import llama_config

    tok_dir = token_lake.partition_dir("tokenizer")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = llama_config("test", len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    cfg.max_position_embeddings = 32  # shorter than the tokenizer stage's model_max_length (64)
    out = save_checkpoint(LlamaForCausalLM(cfg), tok_dir, tmp_path / "ckpt", {"stage": "test"})
    assert AutoTokenizer.from_pretrained(out).model_max_length == 32
    assert "max_new_tokens" not in GenerationConfig.from_pretrained(out).to_diff_dict()


def test_lineage_paths_are_relative_to_the_lake_and_floats_short(tmp_path):
    from training.checkpoint import portable_lineage

    root = tmp_path / "lake"
    lineage = {"lake_root": str(root), "reference_checkpoint": str(root / "models" / "sft_model" / "checkpoint"),
               "pairs": "/elsewhere/pairs.jsonl", "mixture_weights": {"web": 0.8199999999999998, "qa": 0.019999999999999997},
               "metrics": {"steps": 60, "accuracy": 0.7142857313156128}}
    assert portable_lineage(lineage) == {"reference_checkpoint": "models/sft_model/checkpoint", "pairs": "/elsewhere/pairs.jsonl",
                                         "mixture_weights": {"web": 0.82, "qa": 0.02}, "metrics": {"steps": 60, "accuracy": 0.714286}}
