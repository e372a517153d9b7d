"""Human feedback as lake stages: people rank sampled answers, the rankings become preference pairs.

    sft_model -> ranking_tasks -> (people rank in Label Studio) -> human_preferences -> reward_model

`ranking_tasks` samples k answers per prompt from the SFT model and writes them as Label Studio
tasks (`tasks.json`, importable by hand); with `LABEL_STUDIO_URL` and `LABEL_STUDIO_API_KEY` set it
also creates a ranking project (List + Ranker) for the SFT checkpoint and imports the tasks. A
sensor watches the project's annotation count and materializes `human_preferences`, which reads
the annotations back (or a file, when there is no server), expands each ranking into pairs (best
over every lower answer, and so on down), drops prompts that share an n-gram with an evaluation
prompt, and reports how often two annotators ordered the same two answers the same way.

The file a user can hand in instead of a server (any tool can write it) is JSONL, one ranking
per line, best answer first:

    {"prompt": "...", "ranking": ["best answer", "second", ...], "annotator": "ann-7", "created_at": "2026-11-23T10:00:00Z"}

A Label Studio JSON export (a list of tasks with their annotations) is read as well.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from pipelines.contract import Stage, StageContext, config_to_dict, param, require
from pipelines.lake import atomic_write_bytes, file_hash
from training.checkpoint import checkpoint_hash
from training.datasets import decontaminate, eval_prompts_of, pair_problem

LIST, RANKER = "answers", "ranking"
LABEL_CONFIG = f"""<View>
  <Header value="Rank the answers: drag the best one to the top"/>
  <Text name="prompt" value="$prompt"/>
  <List name="{LIST}" value="$items" title="Answers"/>
  <Ranker name="{RANKER}" toName="{LIST}"/>
</View>"""


def label_studio_client():
    """A client for the server named by LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY, or None when no server is configured."""
    url = os.environ.get("LABEL_STUDIO_URL")
    if not url:
        return None
    key = os.environ.get("LABEL_STUDIO_API_KEY")
    if not key:
        raise ValueError("LABEL_STUDIO_URL is set but LABEL_STUDIO_API_KEY is not: create a token under Account & Settings")
    from training.label_studio import LabelStudio

    return LabelStudio(url, key)


@dataclass(frozen=True)
class RankingTasksConfig:
    """Which prompts people rank, and how many answers each."""

    max_prompts: int = param(24, "prompts to rank (a seeded sample of the preference prompts)")
    samples_per_prompt: int = param(4, "answers sampled per prompt; identical answers are shown once")
    max_new_tokens: int = param(40, "longest sampled answer")
    project_title: str = param("llm-foundry answer ranking", "Label Studio project title (the SFT checkpoint's hash is appended)")
    seed: int = param(0, "seed of the prompt sample and the sampling")

    def __post_init__(self):
        require(self.max_prompts > 0 and self.max_new_tokens > 0, self, "max_prompts", "max_prompts and max_new_tokens must be > 0")
        require(self.samples_per_prompt >= 2, self, "samples_per_prompt", "must be >= 2 (a ranking needs two answers)")


def ranking_task(prompt: str, answers: list[str], model_hash: str) -> dict:
    return {"data": {"prompt": prompt, "model": model_hash,
                     "items": [{"id": f"a{i}", "title": f"Answer {i + 1}", "body": a} for i, a in enumerate(answers)]}}


def build_ranking_tasks(ctx: StageContext, cfg: RankingTasksConfig) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.rl import sample

    lake = ctx.lake
    sft = lake.checkpoint_dir("sft_model")
    pairs_text = Path(lake.read_manifest("preference_dataset")["path"]).read_text()
    prompts = sorted({json.loads(line)["prompt"] for line in pairs_text.splitlines() if line.strip()})
    picked = [prompts[i] for i in sorted(np.random.default_rng(cfg.seed).permutation(len(prompts))[:cfg.max_prompts])]
    tok, model = AutoTokenizer.from_pretrained(sft), AutoModelForCausalLM.from_pretrained(sft)
    s = sample(model, tok, picked, cfg.samples_per_prompt, cfg.max_new_tokens, cfg.seed)
    model_hash = checkpoint_hash(sft)
    tasks = []
    for i, prompt in enumerate(picked):
        rows = s.seqs[i * cfg.samples_per_prompt:(i + 1) * cfg.samples_per_prompt]
        starts = s.starts[i * cfg.samples_per_prompt:(i + 1) * cfg.samples_per_prompt]
        answers = list(dict.fromkeys(tok.decode(r[st:], skip_special_tokens=True).strip() for r, st in zip(rows, starts)))
        if len([a for a in answers if a]) >= 2:
            tasks.append(ranking_task(prompt, [a for a in answers if a], model_hash))
    out = lake.partition_dir("ranking_tasks") / "tasks.json"
    atomic_write_bytes(out, json.dumps(tasks, ensure_ascii=False, indent=1).encode())
    manifest = {"asset": "ranking_tasks", "path": str(out), "rows": len(tasks), "prompts": len(picked),
                "single_answer_prompts": len(picked) - len(tasks), "content_hash": file_hash(out), "sft_checkpoint_hash": model_hash,
                "label_studio": None, "config": config_to_dict(cfg)}
    client = label_studio_client()
    if client is not None:
        project = manifest["label_studio"] = client.publish(f"{cfg.project_title} ({model_hash[:8]})", LABEL_CONFIG, tasks,
                                                            description=f"Answers of SFT checkpoint {model_hash}")
        ctx.log(f"{len(tasks)} ranking tasks in Label Studio project {project['title']!r}: {project['project_url']}")
    else:
        ctx.log(f"no LABEL_STUDIO_URL: import {out} into Label Studio by hand, or hand rankings to human_preferences as JSONL")
    lake.write_manifest("ranking_tasks", None, manifest)
    return manifest


def rankings_from_export(tasks: list[dict]) -> tuple[list[dict], list[str]]:
    """Rankings (prompt, answers best first, annotator, time) from Label Studio's JSON export, and why any were skipped."""
    rankings, skipped = [], []
    for task in tasks:
        items = {it["id"]: it["body"] for it in task["data"].get("items", [])}
        for ann in task.get("annotations", []):
            where = f"task {task.get('id')} annotation {ann.get('id')}"
            if ann.get("was_cancelled"):
                skipped.append(f"{where}: skipped by the annotator")
                continue
            order = next((r["value"]["ranker"].get(RANKER) for r in ann.get("result", []) if r.get("type") == "ranker"), None)
            if not order or any(i not in items for i in order):
                skipped.append(f"{where}: no ranking of this task's answers")
                continue
            rankings.append({"prompt": task["data"]["prompt"], "ranking": [items[i] for i in order],
                             "annotator": str(ann.get("completed_by")), "created_at": ann.get("created_at"),
                             "lead_time": ann.get("lead_time"), "task": task.get("id")})
    return rankings, skipped


def read_annotations(path: Path, from_export, from_row, needs: str) -> tuple[list[dict], list[str]]:
    """Records from a Label Studio JSON export (`from_export`), or JSONL whose lines are exported tasks or plain rows
    (`from_row` gives the record, or None when the row lacks what `needs` says), and why any line was skipped."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        return from_export(json.loads(text))
    records, skipped = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(f"{path}:{n}: not JSON ({exc.msg})")
            continue
        if isinstance(row, dict) and "annotations" in row and "data" in row:  # one exported task per line
            more, why = from_export([row])
            records += more
            skipped += why
        elif isinstance(row, dict) and (record := from_row(row)) is not None:
            records.append(record)
        else:
            skipped.append(f"{path}:{n}: {needs}")
    return records, skipped


def _ranking_row(row: dict) -> dict | None:
    ranking = row.get("ranking")
    if not isinstance(row.get("prompt"), str) or not isinstance(ranking, list) or len(ranking) < 2 \
            or not all(isinstance(a, str) and a.strip() for a in ranking):
        return None
    return {"prompt": row["prompt"], "ranking": ranking, "annotator": str(row.get("annotator")), "created_at": row.get("created_at"),
            "lead_time": row.get("lead_time"), "task": row.get("task")}


def read_rankings(path: Path) -> tuple[list[dict], list[str]]:
    """Rankings from a JSONL of rankings (the format above) or a Label Studio JSON export."""
    return read_annotations(path, rankings_from_export, _ranking_row,
                            "needs `prompt` and a `ranking` list of at least two non-empty answers, best first")


def ranking_pairs(ranking: dict) -> list[dict]:
    """Every (higher, lower) pair of a ranking: n answers give n(n-1)/2 pairs."""
    return [{"prompt": ranking["prompt"], "chosen": a, "rejected": b, "origin": "human", "annotator": ranking["annotator"],
             "created_at": ranking["created_at"]} for a, b in combinations(ranking["ranking"], 2) if a != b]


def agreement(rankings: list[dict]) -> dict:
    """How often two annotators who ranked the same prompt put the same two answers in the same order."""
    by_prompt: dict[str, dict[str, list[str]]] = {}
    for r in rankings:
        by_prompt.setdefault(r["prompt"], {})[r["annotator"]] = r["ranking"]
    same = total = overlapping = 0
    for annotators in by_prompt.values():
        if len(annotators) < 2:
            continue
        overlapping += 1
        for first, second in combinations(annotators.values(), 2):
            pos_a, pos_b = {t: i for i, t in enumerate(first)}, {t: i for i, t in enumerate(second)}
            for x, y in combinations(sorted(set(pos_a) & set(pos_b)), 2):
                same += (pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y])
                total += 1
    return {"prompts_ranked_by_several": overlapping, "compared_pairs": total, "pairwise_agreement": same / total if total else None}


@dataclass(frozen=True)
class HumanPreferencesConfig:
    """Where the people's rankings come from."""

    rankings_path: str | None = param(None, "a JSONL of rankings or a Label Studio JSON export; None = the ranking_tasks project "
                                            "on LABEL_STUDIO_URL (nothing, when neither exists)")
    ngram: int = param(8, "word n-gram shared with an evaluation prompt that drops a pair")


def build_human_preferences(ctx: StageContext, cfg: HumanPreferencesConfig) -> dict:
    lake = ctx.lake
    if cfg.rankings_path:
        source = cfg.rankings_path
        rankings, skipped = read_rankings(Path(cfg.rankings_path))
    else:
        project = (lake.read_manifest("ranking_tasks") if lake.has_manifest("ranking_tasks") else {}).get("label_studio")
        client = label_studio_client() if project else None
        if client is None:
            source, rankings, skipped = "none (no LABEL_STUDIO_URL and no rankings_path)", [], []
            ctx.warn("no rankings: set LABEL_STUDIO_URL and materialize ranking_tasks, or give rankings_path")
        else:
            source = f"{client.url}/projects/{project['project_id']}"
            rankings, skipped = rankings_from_export(client.export(project["project_id"]))
    for why in skipped[:5]:
        ctx.warn(f"skipped {why}")
    pairs = [p for r in rankings for p in ranking_pairs(r) if pair_problem(p) is None]
    eval_prompts = eval_prompts_of(ctx.inputs.chat_dir / "eval_prompts.jsonl") if ctx.inputs else []
    kept, dropped = decontaminate(pairs, lambda p: [p["prompt"]], eval_prompts, cfg.ngram)
    out = lake.partition_dir("human_preferences")
    atomic_write_bytes(out / "rankings.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rankings).encode())
    atomic_write_bytes(out / "data.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in kept).encode())
    lead = [r["lead_time"] for r in rankings if isinstance(r.get("lead_time"), (int, float))]
    manifest = {"asset": "human_preferences", "path": str(out / "data.jsonl"), "rows": len(kept), "pairs": len(kept),
                "rankings": len(rankings), "annotators": len({r["annotator"] for r in rankings}), "skipped": len(skipped),
                "skipped_examples": skipped[:20], "decontaminated": len(dropped), "source": source, **agreement(rankings),
                "median_seconds_per_ranking": statistics.median(lead) if lead else None,
                "content_hash": file_hash(out / "data.jsonl"), "config": config_to_dict(cfg)}
    lake.write_manifest("human_preferences", None, manifest)
    return manifest


RANKING_TASKS = Stage(name="ranking_tasks", config=RankingTasksConfig, run=build_ranking_tasks, inputs=("sft_model", "preference_dataset"),
                      description="Answers sampled from the SFT model for people to rank: Label Studio tasks (tasks.json), and a "
                                  "ranking project on the server named by LABEL_STUDIO_URL when it is set.")
HUMAN_PREFERENCES = Stage(
    name="human_preferences", config=HumanPreferencesConfig, run=build_human_preferences, inputs=("ranking_tasks",), reads_inputs=True,
    description="People's rankings (from the Label Studio project, or a JSONL/export file) expanded into preference pairs with "
                "annotator and time; agreement between annotators who ranked the same prompt. The reward model trains on them "
                "with the bundled pairs.")
