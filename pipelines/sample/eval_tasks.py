"""The evaluation tasks bundled with the project, generated from the sample's fact table and chat data.

`python -m pipelines.sample.eval_tasks evaluation/data/bundled_tasks.jsonl` rewrites the
bundled file; a test checks that the committed file equals what this module generates, so the
sample and the tasks cannot drift apart. Runtime code reads the file, never this module.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from evaluation.tasks import GenItem, McItem
from pipelines.sample.chat import FACT_QUESTIONS, HARMFUL, REFUSAL, build_chat_data
from pipelines.sample.sources import CITIES


def bundled_mc(seed: int = 0) -> list[McItem]:
    """Fact questions with four options each (lm-evaluation-harness style, zero-shot)."""
    rng = random.Random(seed)
    rivers = sorted({c[3] for c in CITIES})
    countries = sorted({c[1] for c in CITIES})
    items = []
    for name, country, _, river, year in CITIES:
        for task, question, right, pool in (
            ("facts_river", f"Which river flows through {name}?", river, rivers),
            ("facts_country", f"In which country is the city of {name}?", country, countries),
            ("facts_founded", f"In which year was {name} founded?", str(year), [str(c[4]) for c in CITIES]),
        ):
            wrong = rng.sample([p for p in sorted(set(pool)) if p != right], 3)
            choices = wrong + [right]
            rng.shuffle(choices)
            items.append(McItem(task, question, choices, choices.index(right)))
    return items


def _typo(text: str, rng: random.Random) -> str:
    words = text.split()
    i = max(range(len(words)), key=lambda k: len(words[k]))  # the longest word gets two letters swapped
    w = words[i]
    if len(w) > 3:
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def bundled_generation(seed: int = 0) -> list[GenItem]:
    rng = random.Random(seed)
    items = []
    for row in build_chat_data(seed)["eval_prompts"]:
        key = ""
        if row["task"] == "factuality":
            city = next(c for c in CITIES if c[0] in row["prompt"])
            key = {"population": f"{city[2]:,}", "river": city[3], "founded": str(city[4]), "country": city[1]}[row["fact"]]
            paraphrase = FACT_QUESTIONS[row["fact"]][0][0].format(city=city[0])
            variants = {"lowercase": row["prompt"].lower(), "typo": _typo(row["prompt"], rng), "paraphrase": paraphrase}
        else:
            variants = {"lowercase": row["prompt"].lower(), "typo": _typo(row["prompt"], rng)}
        items.append(GenItem(row["task"], row["prompt"], row["answer"], key, bool(row.get("harmful")), variants))
    # every harmful request, including those seen in SFT, measures the refusal rate
    for q in HARMFUL:
        if not any(i.prompt == q for i in items):
            items.append(GenItem("safety_seen", q, REFUSAL, "", True, {"lowercase": q.lower(), "typo": _typo(q, rng)}))
    return items


def task_rows(seed: int = 0) -> list[dict]:
    """Every bundled task as a JSONL row in the user task format (evaluation/tasks.py)."""
    rows = [{"type": "multiple_choice", "task": m.task, "question": m.question, "choices": m.choices, "gold": m.gold}
            for m in bundled_mc(seed)]
    rows += [{"type": "generation", "task": g.task, "prompt": g.prompt, "answer": g.answer, "key": g.key, "harmful": g.harmful,
              "variants": g.variants} for g in bundled_generation(seed)]
    return rows


def write_task_file(path: Path, seed: int = 0) -> None:
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in task_rows(seed)), encoding="utf-8")


if __name__ == "__main__":
    write_task_file(Path(sys.argv[1]))
