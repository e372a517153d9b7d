"""Mixture planning, tokenizer training, and token shards (no dagster imports)."""
