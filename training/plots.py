"""A training curve (loss, or reward for RL) as a small self-contained SVG data URI (Dagster metadata has no image type; markdown shows it).

Dagster's asset page renders markdown metadata inline only under 1,000 characters (longer values
hide behind "[Show Markdown]"), so the curve is drawn from at most `points` samples per series with
integer coordinates and fits that budget.
"""

from __future__ import annotations

import base64

INLINE_LIMIT = 1000  # Dagster UI: markdown metadata at or over this length is shown only in a pop-up


def _sample(pts: list[tuple[int, float]], n: int) -> list[tuple[int, float]]:
    if len(pts) <= n:
        return pts
    return [pts[round(i * (len(pts) - 1) / (n - 1))] for i in range(n)]


def loss_curve_markdown(history: list[dict], baseline: float | None = None, quantity: str = "loss") -> str:
    """Train and validation `quantity` (history keys `train_loss`/`val_loss`, or `reward`/`val_reward`...) and the
    unigram baseline (dashed), in as many points as fit inline."""
    for points in (16, 10, 6):
        md = _curve(history, baseline, points, quantity)
        if len(md) < INLINE_LIMIT:
            break
    return md


def _curve(history: list[dict], baseline: float | None, points: int, quantity: str, width: int = 360, height: int = 140) -> str:
    train_key = "train_loss" if quantity == "loss" else quantity
    series = {"train": [(h["step"], h[train_key]) for h in history if train_key in h],
              "val": [(h["step"], h[f"val_{quantity}"]) for h in history if f"val_{quantity}" in h]}
    series = {k: _sample(v, points) for k, v in series.items()}
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "_no training steps recorded_"
    ys = [y for _, y in pts] + ([baseline] if baseline else [])
    x0, x1, y0, y1 = min(x for x, _ in pts), max(x for x, _ in pts), min(ys), max(ys)
    pad = 20

    def sx(x):
        return round(pad + (x - x0) / max(x1 - x0, 1) * (width - 2 * pad))

    def sy(y):
        return round(height - pad - (y - y0) / max(y1 - y0, 1e-9) * (height - 2 * pad))

    colors = {"train": "#1f77b4", "val": "#d62728"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="10">'
             f'<rect width="100%" height="100%" fill="#fff"/><text x="{pad}" y="12">{quantity} {y1:.2f}..{y0:.2f}, steps {x0}..{x1}</text>']
    for i, (name, s) in enumerate(series.items()):
        if s:
            parts.append(f'<polyline fill="none" stroke="{colors[name]}" points="{" ".join(f"{sx(x)},{sy(y)}" for x, y in s)}"/>'
                         f'<text x="{width - 50}" y="{12 + 11 * i}" fill="{colors[name]}">{name}</text>')
    if baseline:
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{sy(baseline)}" y2="{sy(baseline)}" stroke="gray" stroke-dasharray="4"/>')
    parts.append("</svg>")
    data = base64.b64encode("".join(parts).encode()).decode()
    return f"![{quantity} curve](data:image/svg+xml;base64,{data})"
