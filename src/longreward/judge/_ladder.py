"""The structured-output ladder: which reply format an endpoint takes, found once and kept.

Rungs, best first: ``response_format`` json_schema (OpenAI, vLLM, SGLang, Ollama);
``{"type": "json_object", "schema": ...}`` (llama.cpp's grammar-constrained JSON; its server
answers a json_schema request with HTTP 500 naming ``response_format``); plain json_object
(JSON whose shape only the prompt gives); tagged text with a tolerant parser. Every JSON rung
uses the same JSON reply prompt and parser; only the request differs.

- A refusal is recognised from the error body (it names ``response_format``, ``json_schema``,
  …), whatever the status (400, 422, 500): see the provider's error mapping.
- While the mode is unknown, one small probe request per rung finds it, with its own short
  timeout, shared by every ask that is waiting. No answer at all (connection refused, timeout,
  a 5xx without such a body) is an outage, not a schema answer: the probe stops, the asks go
  on at the top rung through the normal retries, and a refusal on a real request still steps
  the client down.
- The mode found is recorded per endpoint in the run store's meta table, keyed by provider,
  model and a hash of the base URL (no URL, no key), and reused when the run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._util.redact import redact
from .._util.text import short
from ..errors import UsageError
from ._provider import ModelAPI
from ._types import (
    LADDER,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelOutput,
    SchemaUnsupportedError,
    StructuredMode,
    StructuredOutput,
)

logger = logging.getLogger("longreward.judge")

#: seconds the probe waits for each rung (or the client's timeout, if shorter)
PROBE_TIMEOUT_S = 30.0
#: after a probe that got no answer, asks wait this long before probing again
PROBE_AGAIN_S = 30.0

PROBE_SCHEMA: JsonSchema = {
    "title": "Probe",
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}
PROBE_MESSAGES = [Message(role="user",
                          content='Reply with the JSON object {"ok": true} and nothing else.')]
PROBE_CONFIG = GenerateConfig(temperature=0.0, max_tokens=16)

_SETTINGS = ("auto", "json", *LADDER)


@functools.lru_cache(maxsize=64)  # asked on every successful call
def meta_key(api: ModelAPI) -> str:
    """The run-store meta key of one endpoint's mode: provider, model, hash of the base URL."""
    url = hashlib.sha256((api.base_url or "").encode("utf-8")).hexdigest()[:16]
    return f"structured_output:{api.provider}:{api.model}:{url}"


async def find_mode(send: Callable[[StructuredMode], Awaitable[ModelOutput]],
                    rungs: tuple[StructuredMode, ...],
                    on_refused: Callable[[StructuredMode, Exception], object] | None = None,
                    ) -> tuple[StructuredMode, list[str]]:
    """The best rung ``send`` gets through, and the rungs refused on the way (each also
    reported to ``on_refused`` as it happens: a refusal is an answer even if the probe is cut
    short later). Any error other than a refusal (an outage, a refused key) propagates."""
    refused: list[str] = []
    for mode in rungs:
        if mode == "text":
            break
        try:
            await send(mode)
        except SchemaUnsupportedError as exc:
            refused.append(mode)
            if on_refused is not None:
                on_refused(mode, exc)
            continue
        return mode, refused
    return "text", refused


def request(api: ModelAPI, messages: list[Message], config: GenerateConfig,
            schema: JsonSchema | None, mode: StructuredMode | None) -> Awaitable[ModelOutput]:
    """One provider call in ``mode`` (None: json_schema when a schema is given)."""
    if mode == "text" or schema is None:
        return api.generate(messages, config, None)
    if mode in (None, "json_schema"):
        return api.generate(messages, config, schema)
    return api.generate(messages, config, schema, response_format=mode)  # type: ignore[call-arg]


class Ladder:
    """The structured-output mode of one client (all its endpoints serve one model)."""

    def __init__(self, setting: StructuredOutput, apis: list[ModelAPI]) -> None:
        if setting not in _SETTINGS:
            raise UsageError(f"structured_output must be one of {', '.join(_SETTINGS)}, "
                             f"not {setting!r}")
        first = apis[0].structured_modes
        self.rungs: tuple[StructuredMode, ...] = tuple(
            m for m in first if all(m in api.structured_modes for api in apis))
        fixed: StructuredMode | None = None if setting == "auto" else (
            "json_schema" if setting == "json" else setting)  # type: ignore[assignment]
        if fixed is not None and fixed not in self.rungs:
            raise UsageError(
                f"the {apis[0].provider!r} provider cannot send structured_output={fixed!r}; "
                f"it supports {', '.join(self.rungs)} (or auto)")
        self.fixed = fixed
        self.mode: StructuredMode | None = fixed
        #: only providers with rungs between json_schema and text have something to probe
        self.probes = fixed is None and len(self.rungs) > 2
        self.probe_task: Any = None
        self.probe_again_at = 0.0
        self._loaded = False
        self._recorded: dict[str, str] = {}

    def current(self) -> StructuredMode:
        return self.mode or self.rungs[0]

    def load(self, cache: Any, apis: list[ModelAPI]) -> None:
        """Take the modes recorded by an earlier run, if every endpoint has one."""
        if self._loaded or self.fixed is not None:
            return
        get_meta = getattr(cache, "get_meta", None)
        if get_meta is None:
            return
        self._loaded = True
        found: list[StructuredMode] = []
        for api in apis:
            value = get_meta(meta_key(api))
            mode = value.get("mode") if isinstance(value, dict) else None
            if mode not in self.rungs:
                return
            self._recorded[meta_key(api)] = mode
            found.append(mode)
        if found and self.mode is None:
            self.mode = max(found, key=self.rungs.index)  # the lowest rung serves them all
            logger.info("structured output: %s (recorded by an earlier run)", self.mode)

    def accepted(self, cache: Any, api: ModelAPI, mode: StructuredMode) -> None:
        """A request in ``mode`` went through on ``api``."""
        if self.mode is None and self.fixed is None:
            self.mode = mode
        self.record(cache, api, mode)

    def record(self, cache: Any, api: ModelAPI, mode: StructuredMode) -> None:
        if self.fixed is not None:
            return  # a forced mode says nothing about what the endpoint would take
        key = meta_key(api)
        set_meta = getattr(cache, "set_meta", None)
        if set_meta is None or self._recorded.get(key) == mode:
            return
        self._recorded[key] = mode
        set_meta(key, {"mode": mode, "provider": api.provider, "model": api.model,
                       "found_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def refused(self, mode: StructuredMode, exc: Exception, *, quiet: bool = False) -> bool:
        """A request in ``mode`` was refused. True if the caller should send again in
        ``current()`` (a lower rung), False if there is nowhere lower to go. The lower rung
        is a guess until a request in it goes through (``accepted`` records it)."""
        if self.fixed is not None or mode == "text":
            return False
        if self.rungs.index(self.current()) > self.rungs.index(mode):
            return True  # another ask stepped down meanwhile
        lower = self.rungs[self.rungs.index(mode) + 1]
        self.mode = lower
        logger.log(logging.DEBUG if quiet else logging.WARNING,
                   "the judge endpoint refused %s replies (%s); trying %s", mode,
                   short(redact(str(exc)), 160), lower)
        return True
