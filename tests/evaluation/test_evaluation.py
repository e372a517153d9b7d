import copy
import json
import shutil

import dagster as dg
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation.contamination import contamination
from evaluation.report import MODEL_ORDER, build_results, render_markdown, validate_results
from evaluation.run import choice_logprobs, evaluate_checkpoint, is_refusal, multiple_choice
from evaluation.tasks import McItem, bundled_tasks, load_tasks
from orchestration.defs.evaluation import evaluation_assets
from orchestration.defs.training import training_assets
from orchestration.factory import assets_only
from orchestration.resources import InputsResource, LakeResource
from pipelines.contract import run_stage
from pipelines.sample.chat import write_chat_data
from training.aligned import ALIGNED
from training.dpo import DpoConfig, DpoJob, run_dpo
from training.pretrain import PretrainConfig, PretrainJob, run_pretrain
from training.reward import RewardConfig, RewardJob, run_reward
from training.rl import RlConfig, RlJob, run_rl
from training.sft import SftConfig, SftJob, run_sft

SMALL = {"max_generation_items": 8, "max_mc_items": 6}


@pytest.fixture(scope="module")
def models(token_lake, tmp_path_factory):
    """Tiny base -> SFT -> DPO, reward -> RL checkpoints and the aligned (DPO) model where the eval assets look for them."""
    chat = write_chat_data(tmp_path_factory.mktemp("chat"))
    base = run_pretrain(PretrainJob(shards_dir=str(token_lake.partition_dir("tokenized_shards")),
                                    out_dir=str(token_lake.checkpoint_dir("base_model")),
                                    config=PretrainConfig(preset="test", max_steps=10, eval_every=5)), log=lambda m: None)
    sft = run_sft(SftJob(base_dir=base["path"], data_path=str(chat["sft"]), out_dir=str(token_lake.checkpoint_dir("sft_model")),
                         config=SftConfig(steps=8, batch_size=4), shards_dir=str(token_lake.partition_dir("tokenized_shards"))),
                  log=lambda m: None)
    pairs = str(chat["preferences"])
    run_dpo(DpoJob(sft_dir=sft["path"], pairs_path=pairs, out_dir=str(token_lake.checkpoint_dir("dpo_model")),
                   config=DpoConfig(steps=3, batch_size=4)), log=lambda m: None)
    reward = run_reward(RewardJob(sft_dir=sft["path"], pairs_path=pairs, out_dir=str(token_lake.checkpoint_dir("reward_model")),
                                  config=RewardConfig(steps=3, batch_size=4)), log=lambda m: None)
    run_rl(RlJob(start_dir=sft["path"], reward_dir=reward["path"], pairs_path=pairs, out_dir=str(token_lake.checkpoint_dir("rl_model")),
                 config=RlConfig(steps=2, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=8, heldout_samples=1)),
           log=lambda m: None)
    run_stage(ALIGNED, token_lake, log=lambda m: None)
    return token_lake


def _tasks():
    mc, gen = bundled_tasks()
    picked = [next(g for g in gen if g.task == t) for t in ("factuality", "safety", "helpfulness", "safety_seen")]
    return mc[:6], picked


def test_eval_is_deterministic_and_results_match_the_schema(models):
    mc, gen = _tasks()
    ckpt = models.checkpoint_dir("sft_model")
    a = evaluate_checkpoint(ckpt, models.partition_dir("tokenized_shards"), mc, gen)
    b = evaluate_checkpoint(ckpt, models.partition_dir("tokenized_shards"), mc, gen)
    assert json.dumps(a["results"], sort_keys=True) == json.dumps(b["results"], sort_keys=True)
    assert a["results"]["validation"]["bits_per_byte,none"] > 0
    evals = {m: copy.deepcopy(a) for m in MODEL_ORDER}
    doc = build_results(evals, {m: {"checkpoint": str(ckpt), "checkpoint_hash": "x"} for m in evals})
    assert validate_results(doc) == []
    broken = copy.deepcopy(doc)
    broken["results"]["sft_model"]["safety"]["refusal_rate,none"] = "high"
    del broken["models"]["base_model"]
    assert len(validate_results(broken)) == 2
    md1 = render_markdown(doc, "card", {"sft_model": a["samples"]})
    assert md1 == render_markdown(doc, "card", {"sft_model": a["samples"]})
    assert "| base_model | sft_model | dpo_model | rl_model | aligned_model |" in md1


def test_multiple_choice_prefers_the_likely_continuation(models):
    tok = AutoTokenizer.from_pretrained(models.checkpoint_dir("base_model"))
    model = AutoModelForCausalLM.from_pretrained(models.checkpoint_dir("base_model")).eval()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # a model that scores every token equally
    res = multiple_choice(model, tok, [McItem("t", "Which one?", ["a", "b b b b"], 0)])
    assert res["t"]["acc,none"] == 1.0  # fewer tokens, higher summed log-likelihood
    assert res["t"]["chance"] == 0.5 and res["t"]["centered_acc,none"] == 1.0


def test_hflm_style_loading_bos_eos(models):
    path = models.checkpoint_dir("aligned_model")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    assert tok("Hello world")["input_ids"] == tok("Hello world", add_special_tokens=False)["input_ids"]  # no BOS added
    assert tok.bos_token_id == tok.eos_token_id == model.config.eos_token_id  # HFLM's prefix token = the document separator
    assert model.config.pad_token_id == tok.pad_token_id and tok.model_max_length == 64
    assert model.generation_config.eos_token_id == [tok.eos_token_id, tok.convert_tokens_to_ids("<|end|>")]


def test_user_task_files_and_contamination(models, tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"question": "2+2?", "choices": ["4", "5"], "gold": 0}\n{"prompt": "Say hi", "answer": "hi"}\n')
    mc, gen = load_tasks(f)
    assert mc[0].choices == ["4", "5"] and gen[0].prompt == "Say hi"
    (tmp_path / "bad.jsonl").write_text('{"question": "no choices gold"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_tasks(tmp_path / "bad.jsonl")
    tok_dir, shards = models.partition_dir("tokenizer"), models.partition_dir("tokenized_shards")
    from training.data import ShardWindows

    seen = AutoTokenizer.from_pretrained(tok_dir).decode(ShardWindows(shards, "train", 40).tokens[100:140].tolist())
    report = contamination([seen, "zebra quantum violin marmalade"], tok_dir, shards)
    assert report["contaminated"] == 1 and report["examples"] == [seen]
    assert is_refusal("I can't help with that.") and not is_refusal("Sure.")


def _run_eval_assets(lake, instance, gates=None):
    resources = {"lake": LakeResource(root=str(lake.root)), "inputs": InputsResource(crawl_dir="x", sources_dir="x"),
                 "pipes_subprocess_client": dg.PipesSubprocessClient()}
    ops = {f"{m}_eval": {"config": SMALL} for m in MODEL_ORDER}
    if gates:
        ops["eval_report"] = {"config": gates}
    return dg.materialize([*training_assets, *evaluation_assets], selection=assets_only(evaluation_assets), instance=instance,
                          resources=resources, run_config={"ops": ops}, raise_on_error=False)


def test_gates_pass_then_block_promotion_of_a_worse_model(models, tmp_path):
    with dg.instance_for_test() as instance:
        ok = _run_eval_assets(models, instance, {"max_contamination_rate": 1.0})
        assert ok.success and all(e.passed for e in ok.get_asset_check_evaluations())
        assert (models.promoted_dir() / "MODEL_CARD.md").exists()
        report = (models.partition_dir("eval_report") / "report.md").read_text()
        assert "| base_model | sft_model | dpo_model | rl_model | aligned_model |" in report and "Crawl partitions" in report
        assert "The candidate `aligned_model` is `dpo_model` (method `dpo`)" in report
        assert validate_results(json.loads((models.partition_dir("eval_report") / "results.json").read_text())) == []
        assert (models.promoted_dir() / "eval_results.json").exists()  # what the next candidate is compared with
        from huggingface_hub import ModelCard

        card = ModelCard.load(models.promoted_dir() / "MODEL_CARD.md")  # the Hub's own parser reads the YAML header
        promoted = json.loads((models.promoted_dir() / "eval_results.json").read_text())["results"]["aligned_model"]
        scores = {(e.task_name, e.metric_type): e.metric_value for e in card.data.eval_results}
        assert scores[("safety", "refusal_rate")] == round(promoted["safety"]["refusal_rate,none"], 6)
        assert scores[("validation", "bits_per_byte")] == round(promoted["validation"]["bits_per_byte,none"], 6)
        lineage = json.loads((models.promoted_dir() / "lineage.json").read_text())
        assert (card.data.datasets or []) == sorted(lineage.get("upstream", {}))  # this test's models come from a bare lake
        assert card.text.lstrip().startswith("# Evaluation report")
        again = _run_eval_assets(models, instance, {"max_contamination_rate": 1.0})  # the same model again: no regression
        assert {e.check_name: e.passed for e in again.get_asset_check_evaluations()}["no_regression_vs_promoted"]
        assert "## Against the promoted model" in (models.partition_dir("eval_report") / "report.md").read_text()
        shutil.rmtree(models.promoted_dir())
        # sabotage the aligned model: heavy noise on every weight
        path = models.checkpoint_dir("aligned_model")
        backup = tmp_path / "aligned_backup"
        shutil.copytree(path, backup)
        model = AutoModelForCausalLM.from_pretrained(path)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 2.0)
        model.save_pretrained(path)
        bad = _run_eval_assets(models, instance, {"max_contamination_rate": 1.0})
        evals = {e.check_name: e.passed for e in bad.get_asset_check_evaluations()}
        assert evals["no_perplexity_regression"] is False
        assert not bad.success
        assert not models.promoted_dir().exists()  # promotion was blocked
        assert not bad.asset_materializations_for_node("promoted_model")
        shutil.rmtree(path)
        shutil.copytree(backup, path)


def test_a_candidate_worse_than_the_promoted_model_fails_the_gate(lake):
    from evaluation.stages import REPORT, versus_promoted

    gate = next(c for c in REPORT.checks if c.name == "no_regression_vs_promoted")
    results = {"safety": {"score,none": 0.9}, "instruction_following": {"format_ok,none": 1.0},
               "factuality": {"contains_answer,none": 0.4}, "mc_aggregate": {"centered_acc,none": 0.1}}
    config = {"max_regression_vs_promoted": 0.05}
    assert versus_promoted(lake, results) is None
    assert gate.evaluate(lake, {"vs_promoted": None, "config": config}).passed  # nothing promoted yet
    lake.promoted_dir().mkdir(parents=True)
    (lake.promoted_dir() / "eval_results.json").write_text(json.dumps(
        {"results": {"aligned_model": results}, "models": {"aligned_model": {"checkpoint_hash": "abc"}}}))
    slightly = dict(results, factuality={"contains_answer,none": 0.36})
    assert gate.evaluate(lake, {"vs_promoted": versus_promoted(lake, slightly), "config": config}).passed
    worse = dict(results, safety={"score,none": 0.7})
    verdict = gate.evaluate(lake, {"vs_promoted": versus_promoted(lake, worse), "config": config})
    assert not verdict.passed and "safety" in verdict.message and verdict.metadata["promoted_checkpoint"] == "abc"


@pytest.mark.parametrize(("refusal", "helpfulness", "passes"), [(0.875, 0.21, True), (0.75, 0.30, False), (0.875, 0.15, False)])
def test_safety_gate_never_lets_refusal_drop_and_allows_a_small_helpfulness_dip(lake, refusal, helpfulness, passes):
    from evaluation.stages import REPORT

    gate = next(c for c in REPORT.checks if c.name == "aligned_safety_not_worse_than_sft")
    manifest = {"config": {"max_helpfulness_drop": 0.05},
                "safety": {"sft_model": {"score": 0.56, "refusal_rate": 0.875, "helpfulness": 0.24},
                           "aligned_model": {"score": 0.5, "refusal_rate": refusal, "helpfulness": helpfulness}}}
    verdict = gate.evaluate(lake, manifest)
    assert verdict.passed is passes and (passes or "worse than SFT" in verdict.message)


def test_multiple_choice_equals_lm_evaluation_harness(models, tmp_path, monkeypatch):
    """lm-eval's `hf` model on the same items, as a local task, gives our acc and acc_norm (no BOS, same split)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mc = [m for m in bundled_tasks()[0] if m.task == bundled_tasks()[0][0].task]
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"question": m.question, "choices": m.choices, "gold": m.gold}) + "\n" for m in mc))
    (tmp_path / "task.yaml").write_text(
        "task: llmf_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(data) + "\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{gold}}\"\ntarget_delimiter: \" \"\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    ckpt = models.checkpoint_dir("aligned_model")
    run = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={ckpt},dtype=float32", tasks=["llmf_mc"], device="cpu",
                                  batch_size=1, log_samples=True, task_manager=TaskManager(include_path=str(tmp_path)))
    model, tok = AutoModelForCausalLM.from_pretrained(ckpt).eval(), AutoTokenizer.from_pretrained(ckpt)
    ours = multiple_choice(model, tok, mc)[mc[0].task]
    theirs = run["results"]["llmf_mc"]
    assert len(mc) >= 10
    assert abs(theirs["acc,none"] - ours["acc,none"]) < 1e-4 and abs(theirs["acc_norm,none"] - ours["acc_norm,none"]) < 1e-4
    for sample in run["samples"]["llmf_mc"]:  # every choice's log-likelihood, not just the argmax
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        assert choice_logprobs(model, tok, mc[sample["doc_id"]]) == pytest.approx(lls, abs=1e-4)


@pytest.mark.parametrize(("aligned_loss", "aligned_mc", "failed"), [(1.4, 0.05, []), (1.6, 0.05, ["val_loss"]),
                                                                     (1.2, -0.05, ["multiple_choice"])])
def test_the_gate_fails_an_aligned_model_that_forgot_its_pretraining(lake, aligned_loss, aligned_mc, failed):
    from evaluation.stages import REPORT, GateConfig
    from pipelines.contract import config_to_dict

    gate = next(c for c in REPORT.checks if c.name == "no_regression_vs_base")
    verdict = gate.evaluate(lake, {"config": config_to_dict(GateConfig()), "val_loss": {"base_model": 1.0, "aligned_model": aligned_loss},
                                   "mc_centered_acc": {"base_model": 0.15, "aligned_model": aligned_mc}})
    assert verdict.passed == (not failed) and all(f in verdict.message for f in failed)
