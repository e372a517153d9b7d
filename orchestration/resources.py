"""Dagster resources: where the lake and the inputs are. Values default to the env settings."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from pipelines.contract import Inputs, config_fields, config_from_dict
from pipelines.engine import Engine, EngineConfig
from pipelines.ingest.remote import CrawlListing
from pipelines.lake import Lake
from pipelines.settings import setting_location, setting_path


class LakeResource(dg.ConfigurableResource):
    """The lake root, a directory or an s3:// URL; every asset writes Parquet under it."""

    root: str  # LAKE_DIR
    work_dir: str = ""  # LAKE_WORK_DIR: an s3:// lake's local directory (models, shards, caches); empty: one per URL in ~/.cache

    @property
    def lake(self) -> Lake:
        return Lake.at(self.root, Path(self.work_dir) if self.work_dir else None)


class InputsResource(dg.ConfigurableResource):
    """Input locations: the crawl directory the sensor watches, a snapshot's crawl listing, and the source corpora."""

    crawl_dir: str
    sources_dir: str
    chat_dir: str = ""
    crawl_listing: str = ""  # CRAWL_LISTING: warc.paths(.gz), local, http(s):// or s3://; see ingest.remote
    crawl_base_url: str = ""  # CRAWL_BASE_URL: where the listed paths live, https://data.commoncrawl.org/ or s3://...
    crawl_sample: str = "all"  # CRAWL_SAMPLE: all | first:N | random:N:SEED | shard:I/K

    @property
    def listing(self) -> CrawlListing | None:
        if not self.crawl_listing:
            return None
        return CrawlListing(listing=self.crawl_listing, base_url=self.crawl_base_url, sample=self.crawl_sample)

    @property
    def chat_path(self) -> Path:
        return Path(self.chat_dir) if self.chat_dir else Path(self.sources_dir).parent / "chat"

    @property
    def inputs(self) -> Inputs:
        return Inputs(crawl_dir=self.crawl_path, sources_dir=self.sources_path, chat_dir=self.chat_path, crawl_listing=self.listing)

    @property
    def crawl_path(self) -> Path:
        return Path(self.crawl_dir)

    @property
    def sources_path(self) -> Path:
        return Path(self.sources_dir)


class EngineResource(dg.ConfigurableResource):
    """Where data stages run their parallel work: this machine's processes, or a Ray cluster (EngineConfig)."""

    kind: str = EngineConfig.kind  # DATA_ENGINE: local | ray
    ray_address: str = EngineConfig.ray_address  # RAY_ADDRESS
    workers: int = EngineConfig.workers
    cpus_per_task: float = EngineConfig.cpus_per_task

    @property
    def engine(self) -> Engine:
        return Engine(config_from_dict(EngineConfig, {f.name: getattr(self, f.name) for f, _ in config_fields(EngineConfig)}))


def default_resources() -> dict:
    return {
        "lake": LakeResource(root=str(setting_location("LAKE_DIR")), work_dir=os.environ.get("LAKE_WORK_DIR", "")),
        "inputs": InputsResource(crawl_dir=str(setting_path("CRAWL_DIR")), sources_dir=str(setting_path("SOURCES_DIR")),
                                 chat_dir=str(setting_path("CHAT_DIR")), crawl_listing=os.environ.get("CRAWL_LISTING", ""),
                                 crawl_base_url=os.environ.get("CRAWL_BASE_URL", ""),
                                 crawl_sample=os.environ.get("CRAWL_SAMPLE", "all")),
        "engine": EngineResource(kind=os.environ.get("DATA_ENGINE", "local"), ray_address=os.environ.get("RAY_ADDRESS", "")),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
