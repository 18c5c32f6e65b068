"""longreward: an off-the-shelf LLM as a reward for long-context answers (LongReward,
arXiv 2410.21252), preference pairs built from it, and DPO training on them.

The public API is what this module exports; submodules with a leading underscore are private.
"""

from __future__ import annotations

from .config import JudgeOptions, RetrievalOptions, ScoreOptions
from .errors import LongRewardError, MissingDependencyError, RecordError
from .io.records import Candidate, FieldMap, PromptRecord
from .judge import GenerateConfig, ModelClient, create_apis
from .preference.listwise import (
    ListwiseOptions,
    ListwiseSelection,
    judge_settings,
    select_listwise,
)
from .reward.dimensions import DIMENSIONS, DimensionResult, combine_reward
from .reward.scorer import LongReward, ScoredAnswer
from .stages.score import ScoreSummary, score_file

__version__ = "0.2.0"

__all__ = [
    "DIMENSIONS", "Candidate", "DimensionResult", "FieldMap", "GenerateConfig", "JudgeOptions",
    "ListwiseOptions", "ListwiseSelection", "LongReward", "LongRewardError", "MissingDependencyError", "ModelClient", "PromptRecord",
    "RecordError", "RetrievalOptions", "ScoreOptions", "ScoreSummary", "ScoredAnswer",
    "combine_reward", "create_apis", "judge_settings", "score_file", "select_listwise",
    "__version__",
]
