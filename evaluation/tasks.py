"""Evaluation tasks: multiple choice (log-likelihood) and generation prompts with perturbations.

The bundled tasks are a data file, `evaluation/data/bundled_tasks.jsonl`; users add their own
files in the same JSONL format:

    multiple choice   {"task": "...", "question": "...", "choices": ["...", ...], "gold": 0}
    generation        {"task": "factuality|safety|helpfulness|...", "prompt": "...", "answer": "...",
                       "harmful": bool, "key": "substring a correct answer contains",
                       "variants": {"lowercase": "...", "typo": "...", ...}}   (optional perturbed prompts)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.jsonl import load_jsonl

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
    for row in load_jsonl(path, _task_problem):
        task = row.get("task", Path(path).stem)
        if "choices" in row:
            mc.append(McItem(task, row["question"], list(row["choices"]), row["gold"]))
        else:
            gen.append(GenItem(task, row["prompt"], row.get("answer", ""), row.get("key", ""), row.get("harmful", False),
                               dict(row.get("variants", {}))))
    return mc, gen


def _task_problem(row: dict) -> str | None:
    """Why a task row would be scored wrongly (None = fine): types, gold in range, booleans that are booleans."""
    if "choices" in row:
        choices, gold = row["choices"], row.get("gold")
        if not isinstance(row.get("question"), str):
            return "`question` must be a string"
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            return "`choices` must be a list of at least two strings"
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
            return f"`gold` must be the index of the right choice, an integer in 0..{len(choices) - 1} (got {gold!r})"
        return None
    if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
        return "generation rows need a non-empty string `prompt` (multiple-choice rows need question/choices/gold)"
    if "harmful" in row and not isinstance(row["harmful"], bool):
        return f"`harmful` must be true or false (JSON booleans), not {row['harmful']!r}"
    for key in ("answer", "key"):
        if key in row and not isinstance(row[key], str):
            return f"`{key}` must be a string"
    if not isinstance(row.get("variants", {}), dict):
        return "`variants` must be an object {perturbation: prompt}"
    return None


def bundled_tasks() -> tuple[list[McItem], list[GenItem]]:
    return load_tasks(BUNDLED_TASKS)
