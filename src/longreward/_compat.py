"""Old import paths of the first release, kept working for one release.

0.1 had a flat layout (``longreward.scorer``, ``longreward.dimensions``, ``longreward.pairs``,
``longreward.data.io`` …). 0.2 groups modules by the paper's parts (``reward/``,
``preference/``, ``stages/``, ``io/``). A meta-path finder maps each old name to the *same*
module object under its new name — not a copy, so classes keep one identity and
``isinstance`` checks hold whichever path a caller imported. Importing an old path warns once
with the new one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old dotted prefix -> new dotted prefix (submodules follow)
MOVED: dict[str, str] = {
    "longreward.scorer": "longreward.reward.scorer",
    "longreward.dimensions": "longreward.reward.dimensions",
    "longreward.sampling": "longreward.preference.sampling",
    "longreward.pairs": "longreward.preference.pairs",
    "longreward.formats": "longreward.preference.formats",
    "longreward.mix": "longreward.preference.mix",
    "longreward.pipeline": "longreward.stages.run",
    "longreward.data": "longreward.io",
    "longreward.data.io": "longreward.io.files",
}


def new_name(old: str) -> str | None:
    for prefix in sorted(MOVED, key=len, reverse=True):
        if old == prefix or old.startswith(prefix + "."):
            return MOVED[prefix] + old[len(prefix):]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; the old path goes away in 0.3",
                      DeprecationWarning, stacklevel=3)
        module = importlib.import_module(self.target)
        self._original = (module.__spec__, getattr(module, "__loader__", None))
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The target is already executed; the import system has just set its __spec__ to the
        # alias spec, which would make importlib.resources and pickling see the old name.
        module.__spec__, module.__loader__ = self._original


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
