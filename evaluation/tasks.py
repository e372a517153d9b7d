"""Evaluation tasks: multiple choice (log-likelihood), generation prompts, perturbations.

Bundled tasks are generated from the sample's fact table and chat data; users add
their own as JSONL files:

    multiple choice   {"task": "...", "question": "...", "choices": ["...", ...], "gold": 0}
    generation        {"task": "factuality|safety|helpfulness|...", "prompt": "...", "answer": "...",
                       "harmful": bool, "key": "substring a correct answer contains"}
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.sample.chat import FACT_QUESTIONS, HARMFUL, REFUSAL, build_chat_data
from pipelines.sample.sources import CITIES


@dataclass
class McItem:
    task: str
    question: str
    choices: list[str]
    gold: int


@dataclass
class GenItem:
    task: str
    prompt: str
    answer: str = ""
    key: str = ""
    harmful: bool = False
    variants: dict[str, str] = field(default_factory=dict)  # perturbation name -> perturbed prompt


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


def load_user_tasks(path: Path) -> tuple[list[McItem], list[GenItem]]:
    """User task file (JSONL): multiple-choice rows have `choices` and `gold`, generation rows a `prompt`."""
    mc, gen = [], []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if "choices" in row:
                mc.append(McItem(row.get("task", Path(path).stem), row["question"], list(row["choices"]), int(row["gold"])))
            else:
                gen.append(GenItem(row.get("task", Path(path).stem), row["prompt"], row.get("answer", ""), row.get("key", ""),
                                   bool(row.get("harmful", False))))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{lineno}: {exc!r}; multiple-choice rows need question/choices/gold, "
                             "generation rows need prompt") from exc
    return mc, gen
