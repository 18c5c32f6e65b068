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
    out = {}
    for n, item in enumerate(items, 1):
        sep = "=" if "=" in item else ":" if what == "--header" and ":" in item else None
        if sep is None or not item.split(sep, 1)[0].strip():
            form = "NAME=VALUE or 'NAME: value'" if what == "--header" else "KEY=VALUE"
            raise typer.BadParameter(f"{what} number {n} must look like {form}")
        k, v = item.split(sep, 1)
        out[k.strip()] = v.strip()
    return out


def option_values(items: list[str] | None, what: str) -> dict[str, Any] | None:
    """Repeated ``KEY=VALUE`` flags whose values are read as YAML scalars, as in a config
    file: ``n_ctx=8192`` is a number, ``verbose=true`` a boolean, ``device=cpu`` text."""
    import yaml

    raw = key_values(items, what)
    if raw is None:
        return None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = yaml.safe_load(v) if v else v
        except yaml.YAMLError:
            out[k] = v
    return out


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
