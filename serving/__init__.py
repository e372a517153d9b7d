"""Serving: the OpenAI-compatible app around the model registry (no Dagster import; see app.py)."""
