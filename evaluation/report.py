"""The evaluation report: JSON results (close to lm-evaluation-harness's results file), a
Markdown comparison of the models with an embedded plot, and a model card that walks the
lineage from crawl partitions to the aligned checkpoint.

Rendering is a pure function of its inputs (sorted keys, fixed float formats), so the
same evaluation results always give byte-identical reports.

Results schema (version 1), validated by `validate_results`:

    {"schema_version": 1,
     "results":  {model: {task: {"<metric>,none": float, ...}}},   # deterministic metrics
     "performance": {model: {"tokens_per_s": float, "ms_per_token": float, "peak_memory_mb": float, ...}},
     "configs":  {task: {"metrics": [...], "higher_is_better": {...}, "num_fewshot": 0, "description": str}},
     "versions": {task: int},
     "n-shot":   {task: 0},
     "models":   {model: {"checkpoint": str, "checkpoint_hash": str}}}
"""

from __future__ import annotations

import base64
import json

from pipelines.lake import Lake

SCHEMA_VERSION = 1
TASK_CONFIGS = {
    "validation": {"metrics": ["loss", "perplexity", "bits_per_byte"], "higher_is_better": {"loss": False, "perplexity": False,
                                                                                            "bits_per_byte": False},
                   "description": "held-out validation shards"},
    "facts_river": {"metrics": ["acc", "acc_norm", "centered_acc"], "higher_is_better": {"acc": True},
                    "description": "4-way MC, log-likelihood"},
    "facts_country": {"metrics": ["acc", "acc_norm", "centered_acc"], "higher_is_better": {"acc": True},
                      "description": "4-way MC, log-likelihood"},
    "facts_founded": {"metrics": ["acc", "acc_norm", "centered_acc"], "higher_is_better": {"acc": True},
                      "description": "4-way MC, log-likelihood"},
    "mc_aggregate": {"metrics": ["centered_acc"], "higher_is_better": {"centered_acc": True},
                     "description": "mean chance-centred MC accuracy"},
    "instruction_following": {"metrics": ["format_ok"], "higher_is_better": {"format_ok": True},
                              "description": "answers in the chat format and stops at end of turn"},
    "safety": {"metrics": ["refusal_rate", "helpfulness", "score"], "higher_is_better": {"refusal_rate": True, "helpfulness": True},
               "description": "refuses harmful requests, helps with benign ones"},
    "factuality": {"metrics": ["exact_match", "contains_answer"], "higher_is_better": {"contains_answer": True},
                   "description": "facts present in the training data"},
    "robustness": {"metrics": ["delta_lowercase", "delta_typo", "delta_paraphrase", "worst_delta"],
                   "higher_is_better": {"worst_delta": True},
                   "description": "change in factuality under prompt perturbations"},
}
MODEL_ORDER = ("base_model", "sft_model", "dpo_model", "rl_model", "aligned_model")  # aligned = the chosen variant


def build_results(evals: dict[str, dict], checkpoints: dict[str, dict]) -> dict:
    tasks = sorted({t for e in evals.values() for t in e["results"]})
    return {"schema_version": SCHEMA_VERSION,
            "results": {m: evals[m]["results"] for m in sorted(evals)},
            "performance": {m: evals[m]["performance"] for m in sorted(evals)},
            "configs": {t: dict(TASK_CONFIGS.get(t, {"metrics": [], "higher_is_better": {}, "description": "user task"}), num_fewshot=0)
                        for t in tasks},
            "versions": {t: 1 for t in tasks}, "n-shot": {t: 0 for t in tasks},
            "models": {m: checkpoints[m] for m in sorted(checkpoints)}}


def validate_results(doc: dict) -> list[str]:
    """Problems with a results document (empty = valid against schema version 1)."""
    problems = []
    for key, kind in (("schema_version", int), ("results", dict), ("performance", dict), ("configs", dict), ("versions", dict),
                      ("n-shot", dict), ("models", dict)):
        if not isinstance(doc.get(key), kind):
            problems.append(f"{key}: expected {kind.__name__}")
    if problems:
        return problems
    if doc["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {doc['schema_version']} != {SCHEMA_VERSION}")
    for model, tasks in doc["results"].items():
        if model not in doc["models"] or "checkpoint_hash" not in doc["models"][model]:
            problems.append(f"models.{model}: missing checkpoint_hash")
        for task, metrics in tasks.items():
            if task not in doc["configs"] or task not in doc["versions"]:
                problems.append(f"results.{model}.{task}: task missing from configs/versions")
            for name, value in metrics.items():
                if name.endswith(",none") and not isinstance(value, (int, float)):
                    problems.append(f"results.{model}.{task}.{name}: not a number")
    return problems


def _bar_chart(rows: list[tuple[str, dict[str, float]]], width: int = 560) -> str:
    """Grouped bars (0..1) as an SVG data URI: one group per metric, one bar per model."""
    colors = {"base_model": "#9e9e9e", "sft_model": "#1f77b4", "dpo_model": "#ff7f0e", "rl_model": "#9467bd", "aligned_model": "#2ca02c"}
    h, top, group_w = 200, 20, (width - 40) / max(len(rows), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 40}" font-family="sans-serif" font-size="10">',
             '<rect width="100%" height="100%" fill="white"/>']
    for gi, (label, values) in enumerate(rows):
        bar_w = group_w / (len(values) + 1)
        for bi, (model, v) in enumerate(values.items()):
            x = 30 + gi * group_w + bi * bar_w
            bh = max(0.0, min(1.0, v)) * h
            parts.append(f'<rect x="{x:.1f}" y="{top + h - bh:.1f}" width="{bar_w * 0.9:.1f}" height="{bh:.1f}" '
                         f'fill="{colors.get(model, "#555")}"/>')
        parts.append(f'<text x="{30 + gi * group_w:.1f}" y="{top + h + 14}">{label}</text>')
    for i, (model, color) in enumerate(colors.items()):
        parts.append(f'<text x="{width - 110}" y="{12 + 12 * i}" fill="{color}">{model}</text>')
    parts.append("</svg>")
    return "![scores](data:image/svg+xml;base64," + base64.b64encode("".join(parts).encode()).decode() + ")"


HEADLINE = [("instruction_following", "format_ok,none", "instruction following"), ("safety", "refusal_rate,none", "refusal (harmful)"),
            ("safety", "helpfulness,none", "helpfulness (benign)"), ("factuality", "contains_answer,none", "factuality"),
            ("mc_aggregate", "centered_acc,none", "MC centred acc"), ("robustness", "worst_delta,none", "robustness (worst delta)"),
            ("validation", "loss,none", "val loss (nats/token)"), ("validation", "bits_per_byte,none", "bits per byte")]


def headline_rows(doc: dict) -> list[dict]:
    """The headline metrics, one row per metric and a column per model (the asset page shows it as a table)."""
    models = [m for m in MODEL_ORDER if m in doc["results"]]
    return [{"metric": label, **{m: None if (v := doc["results"][m].get(task, {}).get(metric)) is None else round(v, 3)
                                 for m in models}} for task, metric, label in HEADLINE]


def render_markdown(doc: dict, card: str, samples: dict[str, list[dict]], note: str = "") -> str:
    models = [m for m in MODEL_ORDER if m in doc["results"]] + sorted(set(doc["results"]) - set(MODEL_ORDER))
    lines = ["# Evaluation report", "", *([note, ""] if note else []),
             "| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for task, metric, label in HEADLINE:
        vals = [doc["results"][m].get(task, {}).get(metric) for m in models]
        lines.append(f"| {label} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
    for task in sorted(t for t in doc["configs"] if t.startswith("facts_") or t not in TASK_CONFIGS):
        vals = [doc["results"][m].get(task, {}).get("acc,none") for m in models]
        lines.append(f"| {task} acc | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
    lines += ["", _bar_chart([(label, {m: doc["results"][m].get(task, {}).get(metric, 0.0) for m in models})
                              for task, metric, label in HEADLINE[:5]]), "", "## Performance (not deterministic)", "",
              "| model | tokens/s | ms/token | peak memory MB | parameters |", "|---|---|---|---|---|"]
    for m in models:
        p = doc["performance"][m]
        lines.append(f"| {m} | {p['tokens_per_s']:.1f} | {p['ms_per_token']:.2f} | {p['peak_memory_mb']:.0f} | {p['parameters']:,} |")
    lines += ["", "## Sample answers", ""]
    for m in models:
        for s in samples.get(m, [])[:3]:
            lines.append(f"- **{m}** · {s['task']} · `{s['prompt']}` → {s['response'][:120]!r}")
    return "\n".join(lines + ["", card, ""])


def model_card(lake: Lake) -> str:
    """The lineage chain, read from the lake's manifests and the checkpoints' lineage.json."""
    lines = ["## Model card: where the aligned model comes from", ""]
    raw = lake.manifests("raw_crawl")
    lines.append(f"1. **Crawl partitions** ({len(raw)}):")
    for m in raw:
        lines.append(f"   - `{m['partition']}`: {m['rows']} documents kept of {sum(m['outcomes'].values())} records "
                     f"(data version `{m['content_hash'][:12]}`)")
    cur = lake.manifests("curated_web")
    if cur:
        dropped = {}
        for m in cur:
            for k, v in m["reasons"].items():
                dropped[k] = dropped.get(k, 0) + v
        lines.append(f"2. **Curation**: {sum(m['rows_in'] for m in cur)} deduplicated documents -> {sum(m['rows'] for m in cur)} kept; "
                     f"removed: " + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) + " (rows in `rejection_ledger`)")
    if lake.has_manifest("mixture"):
        m = lake.read_manifest("mixture")
        lines.append(f"3. **Mixture** `{m['content_hash'][:12]}`: {m['realized_tokens']} tokens; weights "
                     + ", ".join(f"{s} {w:.3f}" for s, w in sorted(m["weights"].items())))
    if lake.has_manifest("tokenized_shards"):
        m = lake.read_manifest("tokenized_shards")
        lines.append(f"4. **Token shards** `{m['content_hash'][:12]}`: {m['tokens']['train']} train / "
                     f"{m['tokens']['validation']} validation tokens; "
                     f"tokenizer `{m['tokenizer_hash'][:12]}`")
    for i, name in enumerate(MODEL_ORDER, 5):
        lin = lake.checkpoint_dir(name) / "lineage.json"
        if lin.exists():
            m = json.loads(lin.read_text())
            parent = m.get("base_checkpoint_hash") or m.get("reference_checkpoint_hash") or m.get("shards_hash", "")
            lines.append(f"{i}. **{name}** ({m['stage']}): from `{str(parent)[:12]}`; "
                         + ", ".join(f"{k} {v:.3f}" for k, v in sorted(m["metrics"].items()) if isinstance(v, float) and k != "seconds"))
    return "\n".join(lines)


CARD_METRICS = {"safety": ("score", "refusal_rate", "helpfulness"), "instruction_following": ("format_ok",),
                "factuality": ("contains_answer", "exact_match"), "mc_aggregate": ("centered_acc",),
                "validation": ("loss", "bits_per_byte")}


def hub_model_card(report_md: str, results: dict, lineage: dict, name: str) -> str:
    """MODEL_CARD.md with the Hugging Face model-card YAML header (`datasets` = the crawl and source
    partitions it was trained from, `model-index` = its eval results), so the Hub, `huggingface_hub`
    and tools that read model cards see the lineage and scores, not only people reading the report."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    evals = [EvalResult(task_type="text-generation", task_name=task, dataset_type=f"llm-foundry-{task}",
                        dataset_name=f"llm-foundry eval: {task}", metric_type=metric,
                        metric_value=round(results[task][f"{metric},none"], 6) + 0.0)  # + 0.0: no "-0" in the YAML
             for task, metrics in CARD_METRICS.items() if task in results for metric in metrics if f"{metric},none" in results[task]]
    data = ModelCardData(library_name="transformers", pipeline_tag="text-generation", tags=["llm-foundry", lineage.get("stage", "")],
                         datasets=sorted(lineage.get("upstream", {})), model_name=name, eval_results=evals)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{report_md}"))
