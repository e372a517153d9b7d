"""Data-processing library: plain Python over files and Arrow tables (no dagster imports)."""
