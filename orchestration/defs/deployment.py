"""Deployment: the promoted model registered and served, with a blocking live smoke check."""

from orchestration.automation import FOLLOW, WEEKLY_FRESHNESS
from orchestration.factory import stage_assets
from serving.deploy import DEPLOY

deployment_assets = stage_assets(DEPLOY, group="deployment", deps=list(DEPLOY.inputs), kinds={"python", "fastapi"},
                                 automation_condition=FOLLOW, freshness_policy=WEEKLY_FRESHNESS)
