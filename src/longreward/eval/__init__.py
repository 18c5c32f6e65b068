"""Can this reward be trusted, and what did it do? Agreement with human preferences
(:mod:`.agreement`, with :mod:`.baselines`), FactScore-style counts from the faithfulness
details (:mod:`.facts`) and reference-answer grading (:mod:`.reference`). The HTML report is
:mod:`longreward.report`."""

from __future__ import annotations

from ._run import write_result
from .agreement import AgreementOptions, evaluate_agreement, read_agreement_data
from .facts import compare_facts, fact_stats
from .reference import ReferenceOptions, evaluate_reference

__all__ = ["AgreementOptions", "ReferenceOptions", "compare_facts", "evaluate_agreement",
           "evaluate_reference", "fact_stats", "read_agreement_data", "write_result"]
