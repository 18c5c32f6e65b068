"""The one registry of dimensions: their names, order, settings and dispatch.

A dimension is a module of this package that registers one scoring function with
``@dimension(...)``; the package imports every public module in it, so adding a dimension
touches that module and its prompts, nothing else. The scorer, the options' validation, the
pairs rules and the reports all read the set from here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import DimensionResult, JudgeSettings
    from ._shared import PromptWork


@dataclass(frozen=True)
class DimensionInput:
    """Everything a dimension may use to score one answer."""

    work: PromptWork  # the shared per-(document, question) work: chunks, index, extraction
    query: str
    response: str
    settings: JudgeSettings
    #: the run's ``ScoreOptions`` (retrieval top_k, grade batch size, …)
    options: Any

    @property
    def language(self) -> str:
        return self.work.language


ScoreFn = Callable[[DimensionInput], Awaitable["DimensionResult"]]


@dataclass(frozen=True)
class Dimension:
    name: str
    score: ScoreFn
    #: position in outputs and the default set (the paper's order)
    order: int
    #: whether the dimension reads the document (faithfulness, completeness) or only the
    #: question and answer (helpfulness, logicality)
    uses_document: bool
    description: str


_REGISTRY: dict[str, Dimension] = {}


def dimension(name: str, *, order: int, uses_document: bool,
              description: str) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn`` as the scorer of dimension ``name``."""
    def register(fn: ScoreFn) -> ScoreFn:
        if name in _REGISTRY and _REGISTRY[name].score is not fn:
            raise ValueError(f"dimension {name!r} is registered twice")
        _REGISTRY[name] = Dimension(name, fn, order, uses_document, description)
        return fn
    return register


def registered() -> dict[str, Dimension]:
    """The registered dimensions in their order."""
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))
