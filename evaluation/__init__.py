"""Eval tasks, metrics and reports (no dagster imports). Filled by the evaluation issue."""
