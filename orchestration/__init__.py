"""Dagster wiring: assets, checks, partitions, resources, schedules, sensors (the only package importing dagster)."""
