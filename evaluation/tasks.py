"""Evaluation tasks: multiple choice (log-likelihood) and generation prompts with perturbations.

The bundled tasks are a data file, `evaluation/data/bundled_tasks.jsonl`; users add their own
files in the same JSONL format:

    multiple choice   {"task": "...", "question": "...", "choices": ["...", ...], "gold": 0}
    generation        {"task": "factuality|safety|helpfulness|...", "prompt": "...", "answer": "...",
                       "harmful": bool, "key": "substring a correct answer contains",
                       "variants": {"lowercase": "...", "typo": "...", ...}}   (optional perturbed prompts)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_TASKS = Path(__file__).parent / "data" / "bundled_tasks.jsonl"


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


def load_tasks(path: Path) -> tuple[list[McItem], list[GenItem]]:
    """A task file (JSONL): multiple-choice rows have `choices` and `gold`, generation rows a `prompt`."""
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
                                   bool(row.get("harmful", False)), dict(row.get("variants", {}))))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{lineno}: {exc!r}; multiple-choice rows need question/choices/gold, "
                             "generation rows need prompt") from exc
    return mc, gen


def bundled_tasks() -> tuple[list[McItem], list[GenItem]]:
    return load_tasks(BUNDLED_TASKS)
