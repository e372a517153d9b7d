"""Curation: dedup, language ID, PII, toxicity and quality tagging, then filtering with a rejection ledger."""
