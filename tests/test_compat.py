"""The 0.1 import paths keep working for one release, as the same module objects."""

from __future__ import annotations

import importlib
import warnings

import pytest


@pytest.mark.parametrize("old, new", [
    ("longreward.scorer", "longreward.reward.scorer"),
    ("longreward.dimensions", "longreward.reward.dimensions"),
    ("longreward.dimensions.faithfulness", "longreward.reward.dimensions.faithfulness"),
    ("longreward.pairs", "longreward.preference.pairs"),
    ("longreward.sampling", "longreward.preference.sampling"),
    ("longreward.formats", "longreward.preference.formats"),
    ("longreward.mix", "longreward.preference.mix"),
    ("longreward.pipeline", "longreward.stages.run"),
    ("longreward.data.io", "longreward.io.files"),
    ("longreward.data.records", "longreward.io.records"),
])
def test_old_path_is_the_new_module(old: str, new: str) -> None:
    import longreward  # noqa: F401  (installs the alias finder)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old_mod = importlib.import_module(old)
    assert old_mod is importlib.import_module(new)
    assert old_mod.__spec__.name == new  # resources and pickling see the real name


def test_old_class_identity_holds() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from longreward.dimensions import DimensionResult as Old
    from longreward.reward.dimensions import DimensionResult as New

    assert Old is New
