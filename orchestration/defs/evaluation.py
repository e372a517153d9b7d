"""Evaluation assets: one eval per model, the blind human review, the report with its promotion gates, the promoted model and its GGUF."""

from evaluation.report import MODEL_ORDER
from evaluation.review import HUMAN_REVIEW, REVIEW_TASKS
from evaluation.stages import PROMOTED, REPORT, eval_stage
from orchestration.automation import FOLLOW, PROMOTE, WEEKLY_FRESHNESS
from orchestration.factory import stage_assets
from training.gguf_export import GGUF

COMMON = dict(group="evaluation")
evaluation_assets = [
    *(d for model in MODEL_ORDER for d in stage_assets(eval_stage(model), deps=[model], kinds={"python", "pytorch"},
                                                        automation_condition=FOLLOW, **COMMON)),
    *stage_assets(REVIEW_TASKS, deps=list(REVIEW_TASKS.inputs), kinds={"python", "labelstudio"}, automation_condition=FOLLOW, **COMMON),
    *stage_assets(HUMAN_REVIEW, deps=list(HUMAN_REVIEW.inputs), kinds={"python", "labelstudio"}, automation_condition=FOLLOW, **COMMON),
    *stage_assets(REPORT, deps=list(REPORT.inputs), kinds={"python", "markdown"}, automation_condition=FOLLOW, **COMMON),
    *stage_assets(PROMOTED, deps=list(PROMOTED.inputs), kinds={"huggingface"}, automation_condition=PROMOTE,
                  freshness_policy=WEEKLY_FRESHNESS, **COMMON),
    *stage_assets(GGUF, deps=list(GGUF.inputs), kinds={"python"}, automation_condition=FOLLOW, **COMMON),
]
