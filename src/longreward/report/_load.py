"""Reading the report's inputs: scored files, pair files and eval results, told apart by their
content, with what their run directories hold (documents, the score stage's summary)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..eval import AGREEMENT_KIND, AgreementResult
from ..io.files import read_rows, run_dirs_of
from ..store import STORE_FILENAME, RunStore

EVAL_KINDS = (AGREEMENT_KIND, "longreward.eval.facts", "longreward.eval.reference",
              "longreward.eval.robustness")


@dataclass
class ScoredFile:
    path: Path
    rows: list[dict[str, Any]]
    #: the run directory that scored it (documents, summary.json), when found
    run_dir: Path | None = None
    #: the score stage's summary (``longreward score`` writes ``RUN/summary.json``)
    summary: dict[str, Any] | None = None
    _docs: dict[str, str | None] = field(default_factory=dict)

    def document(self, row: dict[str, Any]) -> str | None:
        """The document a row was scored against: its ``context``, else the run store's copy."""
        if isinstance(row.get("context"), str):
            return row["context"]
        key = row.get("document")
        if not isinstance(key, str) or self.run_dir is None:
            return None
        if key not in self._docs:
            store_file = self.run_dir / STORE_FILENAME
            text = None
            if store_file.exists():
                with RunStore(self.run_dir) as store:
                    text = store.get_document(key)
            self._docs[key] = text
        return self._docs[key]


@dataclass
class Inputs:
    scored: list[ScoredFile] = field(default_factory=list)
    pairs: list[tuple[Path, list[dict[str, Any]]]] = field(default_factory=list)
    #: agreement results, typed
    agreement: list[tuple[Path, AgreementResult]] = field(default_factory=list)
    #: the other eval results (facts, reference), as read
    results: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[tuple[Path, dict[str, Any]]]:
        return [(p, r) for p, r in self.results if r.get("kind") == kind]


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _scored(path: Path, rows: list[dict[str, Any]], run_dir: Path | None) -> ScoredFile:
    """The scored file with its run directory: the one given, else the first of the places
    the stages keep one (``OUTPUT.run/``, or a ``--run-dir`` the output's manifest lists)
    that holds a run store or a summary."""
    if run_dir is None:
        run_dir = next((d for d in run_dirs_of(path) if (d / STORE_FILENAME).is_file()
                        or (d / "summary.json").is_file()), None)
    if run_dir is None or not run_dir.is_dir():
        return ScoredFile(path, rows)
    return ScoredFile(path, rows, run_dir, _read_summary(run_dir))


def _resolve(base: Path, name: str) -> Path:
    p = Path(name)
    if p.is_absolute() or p.exists():
        return p
    return base.parent / p


def load_inputs(paths: list[Path]) -> Inputs:
    """Sort ``paths`` into scored files, pair files and eval results. An agreement result
    brings its scored answers along. A file that is none of these is a ``UsageError``."""
    out = Inputs()
    seen: set[Path] = set()

    def add_scored(path: Path, run_dir: Path | None = None) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        rows, _ = read_rows(path)
        out.scored.append(_scored(path, rows, run_dir))

    for path in paths:
        if not path.exists():
            raise UsageError(f"report input {path} does not exist")
        data: Any = None
        if path.suffix.lower() == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise UsageError(f"{path}: not valid JSON ({exc}); give scored files, pair "
                                 "files or eval result files") from None
        if isinstance(data, dict):
            if data.get("kind") not in EVAL_KINDS:
                raise UsageError(f"{path}: a JSON object that is not an eval result (its "
                                 f"'kind' is {data.get('kind')!r}, expected one of "
                                 f"{', '.join(EVAL_KINDS)})")
            if data["kind"] != AGREEMENT_KIND:
                out.results.append((path, data))
                continue
            result = AgreementResult.from_json(data, where=str(path))
            out.agreement.append((path, result))
            scored = _resolve(path, result.scored)
            if scored.exists():
                run_dir = _resolve(path, result.run_dir)
                add_scored(scored, run_dir if run_dir.is_dir() else None)
            continue
        rows, errors = read_rows(path)
        first = rows[0] if rows else {}
        if "scores" in first and "reward" in first:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                out.scored.append(_scored(path, rows, None))
        elif "margin" in first or "chosen_reward" in first:
            out.pairs.append((path, rows))
        elif not rows:
            raise UsageError(f"{path}: no readable rows"
                             + (f" ({errors[0]})" if errors else ""))
        else:
            raise UsageError(f"{path}: rows are neither scored answers (scores, reward) nor "
                             "pairs (chosen_reward, margin); give outputs of `longreward "
                             "score`, `longreward pairs` or `longreward eval`")
    return out
