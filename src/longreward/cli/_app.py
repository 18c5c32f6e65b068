from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import LongRewardError


class _Boundary(TyperGroup):
    """The one error boundary of the CLI: an error of ours (``LongRewardError``: a bad config,
    a locked run directory, a judge that refuses our key, a missing extra) is one message and
    exit code 2; anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LongRewardError as exc:
            from rich.console import Console
            from rich.markup import escape

            Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Boundary,
    name="longreward",
    help="LongReward: score long-context answers with an LLM judge, build preference pairs, train DPO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """LongReward: score long-context answers with an LLM judge, build preference pairs,
    train DPO."""
