"""Can this reward be trusted, and what did it do? Agreement with human preferences
(:mod:`.agreement`, with :mod:`.baselines`; its typed result in :mod:`._result`), the checks
of when to trust it (:mod:`.diagnostics`), FactScore-style counts from the faithfulness
details (:mod:`.facts`) and reference-answer grading (:mod:`.reference`). The HTML report is
:mod:`longreward.report`."""

from __future__ import annotations

from ._result import RESULT_KIND as AGREEMENT_KIND
from ._result import AgreementResult, Diagnostic, MethodAccuracy, MethodCost
from ._run import write_result
from ._stats import pearson
from .agreement import AgreementOptions, evaluate_agreement, read_agreement_data
from .diagnostics import diagnose_rows
from .facts import compare_facts, fact_stats
from .reference import ReferenceOptions, evaluate_reference

__all__ = ["AGREEMENT_KIND", "AgreementOptions", "AgreementResult", "Diagnostic", "MethodAccuracy", "MethodCost",
           "ReferenceOptions", "compare_facts", "diagnose_rows", "evaluate_agreement",
           "evaluate_reference", "fact_stats", "pearson", "read_agreement_data", "write_result"]
