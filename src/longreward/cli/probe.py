"""``longreward probe``: what a judge (or policy) endpoint supports, and the flags to use."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ._app import app
from ._common import err, key_values


@app.command("probe")
def probe_command(
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name as the server knows it.")],
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding the API key (default: LONGREWARD_API_KEY, then OPENAI_API_KEY).")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="Extra HTTP header KEY=VALUE (repeatable).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each call.")] = 60.0,
    context_check: Annotated[bool, typer.Option("--context-check/--no-context-check", help="When /models does not state the context window, find it from the error a very long prompt (≈280k tokens) gets. A server with a larger window would process (and may bill) that prompt.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """A few small calls, then a table: reachable, model listed, chat, structured-output mode, n>1, context window, usage and cached tokens, latency; and the flags to use. Exit code 0 when chat works, 1 when not."""
    from ..config import EndpointOptions
    from ..judge import probe_endpoint

    options = EndpointOptions(model=model, base_urls=[base_url], api_key_env=api_key_env,
                              extra_headers=key_values(header, "--header") or {},
                              timeout=timeout)
    api = options.create_apis(model)[0]
    report = asyncio.run(probe_endpoint(api, timeout=timeout, check_context=context_check))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        raise typer.Exit(0 if report.works else 1)
    table = Table(title=f"longreward probe: {report.base_url} (model {report.model})",
                  title_justify="left", show_header=False)
    table.add_column("check", style="bold")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    marks = {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]?[/]"}
    for check in report.checks:
        table.add_row(check.name, marks[check.ok], Text(check.detail))
    err.print(table)
    if report.suggestions:
        err.print("[bold]suggested flags[/]")
        for line in report.suggestions:
            err.print(f"  {line}", markup=False, highlight=False)
    raise typer.Exit(0 if report.works else 1)
