from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ..errors import LongRewardError


class _Boundary(TyperGroup):
    """The one error boundary of the CLI: an error of ours (``LongRewardError``: a bad config,
    a locked run directory, a judge that refuses our key, a missing extra) is one message and
    exit code 2, and so is a file the system refuses us (an ``OSError`` naming its file: a
    full disk, a permission); anything else is a bug and keeps its traceback.

    It also makes ``--help`` readable where it is read as text (a pipe, a log, ``less``):
    plain click help instead of boxed tables, which cut flag names at 80 columns, and value
    names such as TEXT or INTEGER instead of ``<str>``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_help(self, boxed=sys.stdout.isatty())

    def invoke(self, ctx: Any) -> Any:
        from rich.console import Console
        from rich.markup import escape

        try:
            return super().invoke(ctx)
        except LongRewardError as exc:
            Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.filename is None:
                raise
            Console(stderr=True).print(f"[red]error:[/] {escape(exc.strerror or str(exc))}: "
                                       f"{escape(str(exc.filename))}")
            raise typer.Exit(2) from None


def _plain_help(command: Any, *, boxed: bool) -> None:
    """Give every option a click-style value name, and use plain help unless ``boxed``."""
    if not boxed and hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for param in getattr(command, "params", []):
        kind = getattr(param, "param_type_name", "")
        if kind == "option" and not getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = _value_name(param)
        elif kind == "argument" and param.metavar is None:
            param.metavar = (param.name or "value").upper()
            if hasattr(param, "display_type_rich"):  # typer >= 0.20 adds "<str>" after it
                param.display_type_rich = _no_type
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub, boxed=boxed)


def _no_type(ctx: Any = None) -> None:
    return None


def _value_name(param: Any) -> str:
    """TEXT, INTEGER, FLOAT, FILE, PATH... from click's parameter type, or from the type
    descriptor of typer versions that replaced it."""
    kind = getattr(param, "type", None)
    if kind is not None:
        name = str(getattr(kind, "name", "") or "text")
    else:
        desc = getattr(param, "type_descriptor", None)
        if desc is not None and getattr(desc, "is_path", False):
            name = str(desc.path_type)
        else:
            name = param.bare_type() if hasattr(param, "bare_type") else "text"
            name = name.removeprefix("list[").removesuffix("]")
    name = name.upper()
    return {"STR": "TEXT", "INT": "INTEGER"}.get(name, name)


app = typer.Typer(
    cls=_Boundary,
    name="longreward",
    help="LongReward: score long-context answers with an LLM judge, build preference pairs, train DPO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"longreward {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """LongReward: score long-context answers with an LLM judge, build preference pairs,
    train DPO."""
