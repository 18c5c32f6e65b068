from __future__ import annotations

import typer

app = typer.Typer(
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
