"""JSON Lines readers that name `file:line` and the fix for every bad row."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

Problem = Callable[[dict], "str | None"]  # why a row cannot be used, or None


def read_valid_rows(path: Path, problem_of: Problem = lambda row: None) -> tuple[list[dict], list[str]]:
    """Rows that pass `problem_of`, and a `file:line: problem` message for every row that does not."""
    rows, problems = [], []
    for lineno, line in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{path}:{lineno}: not a UTF-8 JSON object ({exc}); one object per line")
            continue
        problem = problem_of(row) if isinstance(row, dict) else "not a JSON object"
        if problem:
            problems.append(f"{path}:{lineno}: {problem}")
        else:
            rows.append(row)
    return rows, problems


def load_jsonl(path: Path, problem_of: Problem = lambda row: None) -> list[dict]:
    """Every row of a file that must be right as a whole; the first bad row is the error."""
    rows, problems = read_valid_rows(path, problem_of)
    if problems:
        raise ValueError(problems[0])
    return rows


def requires(*keys: str) -> Problem:
    """A row check: these keys must be present."""
    def problem(row: dict) -> str | None:
        missing = [k for k in keys if k not in row]
        return f"missing {missing}; each line needs {list(keys)}" if missing else None

    return problem
