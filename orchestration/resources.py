"""Dagster resources: where the lake and the inputs are. Values default to the env settings."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.contract import Inputs
from pipelines.lake import Lake
from pipelines.settings import setting_path


class LakeResource(dg.ConfigurableResource):
    """The lake root; every asset writes Parquet under it."""

    root: str

    @property
    def lake(self) -> Lake:
        return Lake(Path(self.root))


class InputsResource(dg.ConfigurableResource):
    """Input locations: the crawl directory the sensor watches, and the source corpora."""

    crawl_dir: str
    sources_dir: str
    chat_dir: str = ""

    @property
    def chat_path(self) -> Path:
        return Path(self.chat_dir) if self.chat_dir else Path(self.sources_dir).parent / "chat"

    @property
    def inputs(self) -> Inputs:
        return Inputs(crawl_dir=self.crawl_path, sources_dir=self.sources_path, chat_dir=self.chat_path)

    @property
    def crawl_path(self) -> Path:
        return Path(self.crawl_dir)

    @property
    def sources_path(self) -> Path:
        return Path(self.sources_dir)


def default_resources() -> dict:
    return {
        "lake": LakeResource(root=str(setting_path("LAKE_DIR"))),
        "inputs": InputsResource(crawl_dir=str(setting_path("CRAWL_DIR")), sources_dir=str(setting_path("SOURCES_DIR")),
                                 chat_dir=str(setting_path("CHAT_DIR"))),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
