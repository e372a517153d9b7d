"""The Dagster definitions, one module per part of the pipeline; `orchestration/definitions.py`
loads every module here (`dg.load_from_defs_folder`)."""
