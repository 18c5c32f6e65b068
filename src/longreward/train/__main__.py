"""``python -m longreward.train PAIRS ...`` is ``longreward train PAIRS ...``; it exists so that
``accelerate launch -m longreward.train ...`` works without a path to the console script."""

from __future__ import annotations

import sys


def main() -> None:
    from ..cli import app

    app(args=["train", *sys.argv[1:]], prog_name="longreward")


if __name__ == "__main__":
    main()
