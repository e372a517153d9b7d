"""Resources every code location run gets: the lake, the input locations, the Pipes client."""

import dagster as dg

from orchestration.resources import default_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
