"""The ``longreward`` command line. Each group of commands lives in its own module and
registers itself on ``app``."""

from __future__ import annotations

from ._app import app

# Importing the command modules registers their commands on ``app``.
from . import score as _score  # noqa: E402,F401  isort: skip
from . import serve as _serve  # noqa: E402,F401  isort: skip
from . import eval as _eval  # noqa: E402,F401  isort: skip
from . import report as _report  # noqa: E402,F401  isort: skip
from . import probe as _probe  # noqa: E402,F401  isort: skip
from . import batch as _batch  # noqa: E402,F401  isort: skip

for _name in ("data", "train"):
    try:
        __import__(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != f"{__name__}.{_name}":
            raise

__all__ = ["app"]
