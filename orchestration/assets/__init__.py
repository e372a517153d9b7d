"""Ingest-stage assets."""
