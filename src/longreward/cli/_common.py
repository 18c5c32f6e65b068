"""Helpers shared by the CLI commands: flags → option dicts, config sections, error lists."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from ..config import deep_merge, load_config_file

err = Console(stderr=True)
M = TypeVar("M", bound=BaseModel)

#: at most this many rejected records are printed; all of them go to OUTPUT.rejected.jsonl
SHOW_ERRORS = 20


def dry_run_banner(*providers: str, console: Console | None = None) -> None:
    """Print the dry-run banner when any of ``providers`` gives placeholder replies (the
    provider registry knows which: ``dry_run``, under any of its names)."""
    from ..judge import DRY_RUN_BANNER, provider_spec

    if any(provider_spec(p).placeholder for p in providers):
        (console or err).print(f"[bold yellow]{DRY_RUN_BANNER}[/]")


def flag_overrides(**flags: Any) -> dict[str, Any]:
    """Flags that were given, as a nested dict (``"judge.model"`` → ``{"judge": {"model"}}``),
    shaped like the options model so they can be merged over a config file."""
    out: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is None or value == [] or value == {}:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def key_values(items: list[str] | None, what: str) -> dict[str, str] | None:
    """Repeated ``KEY=VALUE`` flags as a dict. ``--header`` also takes curl's ``Name: value``.
    A malformed item is not echoed: it may be a header carrying a secret."""
    if not items:
        return None
    from .._util.redact import split_header

    out = {}
    for n, item in enumerate(items, 1):
        if what == "--header":
            pair = split_header(item)
        else:
            k, sep, v = item.partition("=")
            pair = (k.strip(), v.strip()) if sep and k.strip() else None
        if pair is None:
            form = "NAME=VALUE or 'NAME: value'" if what == "--header" else "KEY=VALUE"
            raise typer.BadParameter(f"{what} number {n} must look like {form}")
        out[pair[0]] = pair[1]
    return out


def option_values(items: list[str] | None, what: str) -> dict[str, Any] | None:
    """Repeated ``KEY=VALUE`` flags with typed values: ``n_ctx=8192`` is a number,
    ``verbose=true`` a boolean, ``seed=null`` none, anything else text. Only those plain
    forms are converted (not YAML's octal ``010``, ``no`` for false or dates), so a value is
    never changed behind the user's back."""
    raw = key_values(items, what)
    if raw is None:
        return None
    return {k: _scalar(v) for k, v in raw.items()}


def _scalar(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def validate_options(model: type[M], config: Path | None, flags: dict[str, Any],
                     section: str | None = None) -> M:
    """Config file (its ``section`` when it has one, else the whole file) + flags → model.
    Validation errors are shown as ``field.path: message`` lines."""
    base: dict[str, Any] = {}
    if config is not None:
        data = load_config_file(config)
        section_data = data.get(section) if section else None
        base = section_data if isinstance(section_data, dict) else data
    try:
        return model.model_validate(deep_merge(base, flags))
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid options:\n" + "\n".join(lines)) from None


def report_errors(errors: list[Any], listed_in: Path | None, console: Console | None = None
                  ) -> None:
    console = console or err
    for e in errors[:SHOW_ERRORS]:
        console.print(f"[red]rejected[/] {e}")
    if len(errors) > SHOW_ERRORS:
        console.print(f"… and {len(errors) - SHOW_ERRORS} more")
    if errors and listed_in is not None:
        console.print(f"rejected records listed in {listed_in}")


def with_flags_of(source: Callable[..., Any], names: tuple[str, ...]
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the parameters ``names`` of command ``source``; the command receives
    their values as one dict in its ``borrowed`` parameter."""
    params = inspect.signature(source, eval_str=True).parameters
    taken = [params[n].replace(kind=inspect.Parameter.KEYWORD_ONLY) for n in names]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.name != "borrowed"]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            borrowed = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, borrowed=borrowed)

        del command.__wrapped__  # typer must read the signature below, not fn's
        signature = inspect.Signature([*own, *taken])
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return decorate
