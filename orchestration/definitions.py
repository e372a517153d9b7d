"""The Dagster code location: `dagster dev -w workspace.yaml` loads `defs` from here.

Every module in `orchestration/defs/` is loaded (`dg.load_from_defs_folder`, configured by
`[tool.dg]` in pyproject.toml): assets and checks built from the library stages, jobs,
sensors, schedules and resources.
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
