"""The ``longreward`` command line. Each group of commands lives in its own module and
registers itself on ``app``; heavy libraries (torch for ``train``) are imported inside the
commands, so importing every module here costs little."""

from __future__ import annotations

from ._app import app

# Importing the command modules registers their commands on ``app``.
from . import score as _score  # noqa: E402,F401  isort: skip
from . import serve as _serve  # noqa: E402,F401  isort: skip
from . import eval as _eval  # noqa: E402,F401  isort: skip
from . import report as _report  # noqa: E402,F401  isort: skip
from . import probe as _probe  # noqa: E402,F401  isort: skip
from . import batch as _batch  # noqa: E402,F401  isort: skip
from . import data as _data  # noqa: E402,F401  isort: skip
from . import train as _train  # noqa: E402,F401  isort: skip

__all__ = ["app"]
