import pytest

from orchestration.resources import InputsResource, LakeResource


@pytest.fixture
def resources(sample_dir, tmp_path):
    return {"lake": LakeResource(root=str(tmp_path / "lake")),
            "inputs": InputsResource(crawl_dir=str(sample_dir / "crawl"), sources_dir=str(sample_dir / "sources"))}
