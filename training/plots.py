"""A loss curve as a self-contained SVG data URI (Dagster metadata has no image type; markdown shows it)."""

from __future__ import annotations

import base64


def loss_curve_markdown(history: list[dict], baseline: float | None = None, width: int = 560, height: int = 240) -> str:
    series = {"train": [(h["step"], h["train_loss"]) for h in history if "train_loss" in h],
              "validation": [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]}
    points = [p for s in series.values() for p in s]
    if not points:
        return "_no training steps recorded_"
    ys = [y for _, y in points] + ([baseline] if baseline else [])
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points) or 1
    y0, y1 = min(ys), max(ys)
    pad = 30

    def sx(x):
        return pad + (x - x0) / max(x1 - x0, 1) * (width - 2 * pad)

    def sy(y):
        return height - pad - (y - y0) / max(y1 - y0, 1e-9) * (height - 2 * pad)

    colors = {"train": "#1f77b4", "validation": "#d62728"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{pad}" y="14">loss (nats/token): {y1:.2f} .. {y0:.2f}, steps {x0}..{x1}</text>']
    for name, pts in series.items():
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline fill="none" stroke="{colors[name]}" stroke-width="1.5" points="{path}"/>')
            parts.append(f'<text x="{width - 110}" y="{30 + 14 * list(series).index(name)}" fill="{colors[name]}">{name}</text>')
    if baseline:
        y = f"{sy(baseline):.1f}"
        parts.append(f'<line x1="{pad}" x2="{width - pad}" y1="{y}" y2="{y}" stroke="gray" stroke-dasharray="4"/>')
        parts.append(f'<text x="{pad + 4}" y="{sy(baseline) - 4:.1f}" fill="gray">unigram baseline {baseline:.2f}</text>')
    parts.append("</svg>")
    data = base64.b64encode("".join(parts).encode()).decode()
    return f"![loss curve](data:image/svg+xml;base64,{data})"
