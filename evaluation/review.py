"""Human review: a blind side-by-side (A/B) comparison of two models' answers, judged by people.

    <model>_eval (the answers) -> review_tasks -> (people judge in Label Studio) -> human_review -> eval_report

`review_tasks` pairs the candidate's and the baseline's answers to the same evaluation prompts
(from their `*_eval` results, so nothing is generated again), puts each model on side A or B by
a seeded coin, and writes Label Studio tasks that name no model; which side is which stays in
the lake (`pairs.json`). With `LABEL_STUDIO_URL` set it creates the review project and imports the
tasks. `human_review` reads the verdicts back (the server, a Label Studio JSON export, or JSONL
rows `{"pair": 3, "verdict": "A" | "B" | "Tie", "annotator": "..."}`) and reports the candidate's
win rate with a 95% Wilson interval; a tie counts half a win. The eval report shows it.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from pipelines.contract import Stage, StageContext, config_to_dict, param, require
from pipelines.lake import atomic_write_bytes, file_hash
from training.feedback import label_studio_client, read_annotations

VERDICT = "verdict"
LABEL_CONFIG = f"""<View>
  <Header value="Which answer is better? The models are not named, and sides are shuffled."/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Answer A"/>
  <Text name="answer_a" value="$answer_a"/>
  <Header value="Answer B"/>
  <Text name="answer_b" value="$answer_b"/>
  <Choices name="{VERDICT}" toName="prompt" choice="single" showInline="true" required="true">
    <Choice value="A"/>
    <Choice value="B"/>
    <Choice value="Tie"/>
  </Choices>
</View>"""


@dataclass(frozen=True)
class ReviewTasksConfig:
    """Which two models people compare, blind."""

    candidate: str = param("aligned_model", "the model under review (its *_eval answers)")
    baseline: str = param("sft_model", "the model it is compared with")
    project_title: str = param("llm-foundry blind review", "Label Studio project title (the two checkpoints' hashes are appended)")
    seed: int = param(0, "seed of the side (A or B) each model gets")

    def __post_init__(self):
        require(self.candidate != self.baseline, self, "baseline", "must differ from the candidate")


def build_review_tasks(ctx: StageContext, cfg: ReviewTasksConfig) -> dict:
    lake = ctx.lake
    evals = {m: json.loads(lake.eval_path(m).read_text()) for m in (cfg.candidate, cfg.baseline)}
    baseline = {(s["task"], s["prompt"]): s["response"] for s in evals[cfg.baseline]["samples"]}
    coin = random.Random(cfg.seed)
    pairs, tasks, identical = [], [], 0
    for s in evals[cfg.candidate]["samples"]:
        other = baseline.get((s["task"], s["prompt"]))
        if other is None:
            continue
        if other == s["response"]:
            identical += 1  # nothing to judge
            continue
        a, b = (cfg.candidate, cfg.baseline) if coin.random() < 0.5 else (cfg.baseline, cfg.candidate)
        answer = {cfg.candidate: s["response"], cfg.baseline: other}
        pairs.append({"pair": len(pairs), "task": s["task"], "prompt": s["prompt"], "a": a, "b": b})
        tasks.append({"data": {"prompt": s["prompt"], "answer_a": answer[a], "answer_b": answer[b], "pair": len(pairs) - 1}})
    out = lake.partition_dir("review_tasks")
    atomic_write_bytes(out / "tasks.json", json.dumps(tasks, ensure_ascii=False, indent=1).encode())
    atomic_write_bytes(out / "pairs.json", json.dumps(pairs, ensure_ascii=False, indent=1).encode())
    hashes = {m: evals[m]["checkpoint"]["checkpoint_hash"] for m in evals}
    manifest = {"asset": "review_tasks", "path": str(out / "tasks.json"), "pairs_path": str(out / "pairs.json"), "rows": len(tasks),
                "identical_answers": identical, "candidate": cfg.candidate, "baseline": cfg.baseline, "checkpoints": hashes,
                "content_hash": file_hash(out / "pairs.json"), "label_studio": None, "config": config_to_dict(cfg)}
    client = label_studio_client()
    if client is not None and tasks:
        manifest["label_studio"] = client.publish(f"{cfg.project_title} ({hashes[cfg.candidate][:8]} vs {hashes[cfg.baseline][:8]})",
                                                  LABEL_CONFIG, tasks, description="Blind A/B review of two models' answers")
    lake.write_manifest("review_tasks", None, manifest)
    return manifest


def verdicts_from_export(tasks: list[dict]) -> tuple[list[dict], list[str]]:
    verdicts, skipped = [], []
    for task in tasks:
        for ann in task.get("annotations", []):
            choice = next((r["value"]["choices"] for r in ann.get("result", []) if r.get("from_name") == VERDICT), None)
            if ann.get("was_cancelled") or not choice or choice[0] not in ("A", "B", "Tie"):
                skipped.append(f"task {task.get('id')} annotation {ann.get('id')}: no A/B/Tie verdict")
                continue
            verdicts.append({"pair": task["data"]["pair"], "verdict": choice[0], "annotator": str(ann.get("completed_by")),
                             "created_at": ann.get("created_at")})
    return verdicts, skipped


def _verdict_row(row: dict) -> dict | None:
    if not isinstance(row.get("pair"), int) or row.get("verdict") not in ("A", "B", "Tie"):
        return None
    return {"pair": row["pair"], "verdict": row["verdict"], "annotator": str(row.get("annotator")), "created_at": row.get("created_at")}


def read_verdicts(path: Path) -> tuple[list[dict], list[str]]:
    """Verdicts from JSONL rows `{"pair", "verdict", "annotator"}` or a Label Studio JSON export."""
    return read_annotations(path, verdicts_from_export, _verdict_row, "needs an integer `pair` and a `verdict` of A, B or Tie")


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (fine at small n and near 0 or 1, unlike the normal interval)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def win_rate(verdicts: list[dict], pairs: list[dict], candidate: str) -> dict:
    """The candidate's wins, losses and ties, its win rate (a tie = half) and its 95% Wilson interval."""
    side = {p["pair"]: ("A" if p["a"] == candidate else "B") for p in pairs}
    wins = losses = ties = 0
    for v in verdicts:
        if v["pair"] not in side:
            continue
        if v["verdict"] == "Tie":
            ties += 1
        elif v["verdict"] == side[v["pair"]]:
            wins += 1
        else:
            losses += 1
    n = wins + losses + ties
    low, high = wilson_interval(wins + ties / 2, n)
    return {"judgements": n, "wins": wins, "losses": losses, "ties": ties, "win_rate": (wins + ties / 2) / n if n else None,
            "ci95_low": low if n else None, "ci95_high": high if n else None}


@dataclass(frozen=True)
class HumanReviewConfig:
    """Where the A/B verdicts come from."""

    verdicts_path: str | None = param(None, "a JSONL of verdicts or a Label Studio JSON export; None = the review_tasks project on "
                                            "LABEL_STUDIO_URL (no verdicts when neither exists)")


def build_human_review(ctx: StageContext, cfg: HumanReviewConfig) -> dict:
    lake = ctx.lake
    tasks = lake.read_manifest("review_tasks")
    pairs = json.loads(Path(tasks["pairs_path"]).read_text())
    client = label_studio_client() if tasks.get("label_studio") else None
    if cfg.verdicts_path:
        source, (verdicts, skipped) = cfg.verdicts_path, read_verdicts(Path(cfg.verdicts_path))
    elif client is not None:
        source = tasks["label_studio"]["project_url"]
        verdicts, skipped = verdicts_from_export(client.export(tasks["label_studio"]["project_id"]))
    else:
        source, verdicts, skipped = "none (no LABEL_STUDIO_URL and no verdicts_path)", [], []
    for why in skipped[:5]:
        ctx.warn(f"skipped {why}")
    out = lake.partition_dir("human_review") / "verdicts.jsonl"
    atomic_write_bytes(out, "".join(json.dumps(v) + "\n" for v in verdicts).encode())
    manifest = {"asset": "human_review", "path": str(out), "rows": len(verdicts), "candidate": tasks["candidate"],
                "baseline": tasks["baseline"], "checkpoints": tasks["checkpoints"], "source": source, "skipped": len(skipped),
                "annotators": len({v["annotator"] for v in verdicts}), **win_rate(verdicts, pairs, tasks["candidate"]),
                "content_hash": file_hash(out), "config": config_to_dict(cfg)}
    lake.write_manifest("human_review", None, manifest)
    return manifest


def review_markdown(m: dict) -> str:
    """The report's section on the blind review."""
    head = f"\n## Human review (blind A/B)\n\n`{m['candidate']}` against `{m['baseline']}`: "
    if not m["judgements"]:
        return head + "no verdicts yet (review_tasks holds the tasks; see README).\n"
    return head + (f"{m['wins']} wins, {m['losses']} losses, {m['ties']} ties from {m['judgements']} judgements by "
                   f"{m['annotators']} annotator(s); win rate {m['win_rate']:.3f} (95% CI {m['ci95_low']:.3f}-{m['ci95_high']:.3f}, "
                   "a tie counts half).\n")


REVIEW_TASKS = Stage(name="review_tasks", config=ReviewTasksConfig, run=build_review_tasks,
                     inputs=("aligned_model_eval", "sft_model_eval"),
                     description="A blind A/B task per evaluation prompt where the candidate's and the baseline's answers differ "
                                 "(sides shuffled, no model named); a Label Studio project when LABEL_STUDIO_URL is set.")
HUMAN_REVIEW = Stage(name="human_review", config=HumanReviewConfig, run=build_human_review, inputs=("review_tasks",),
                     description="People's A/B verdicts: the candidate's win rate against the baseline with a 95% Wilson "
                                 "interval; the eval report shows it.")
