"""``longreward probe``: what an OpenAI-compatible endpoint can do, in a few small calls.

Reachable? Is the model listed? Does chat work, and how fast? Which structured-output rung does
it take (the same detection ``score`` runs: ``ModelClient.detect_structured_output``)? Does it
honour ``n > 1``? What is its context window (from ``/v1/models`` where the server says, else
read from the error a too-long prompt gets)? Does it report usage and cached prompt tokens (is
a prefix cache on)? And which flags follow from all that.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .._util.redact import redact
from ._client import ModelClient
from ._types import (
    ContextTooLongError,
    EndpointUnreachableError,
    GenerateConfig,
    JudgeFatalError,
    Message,
    ModelError,
)

#: where servers state a model's window in ``/v1/models`` (vLLM, LM Studio, OpenRouter,
#: llama.cpp's own server under ``meta``)
_WINDOW_KEYS = ("max_model_len", "context_length", "context_window", "max_context_length",
                "n_ctx", "n_ctx_train")
_WINDOW_IN_ERROR = re.compile(
    r"(?:maximum context length|context window|context length|context size|n_ctx)"
    r"\D{0,40}?(\d[\d,]{2,})", re.IGNORECASE)
#: the too-long prompt: ≈280k tokens, beyond every window a judge is likely to have
_LONG_PROMPT_WORDS = 280_000
#: a system prompt long enough for prefix caches (they cache whole blocks of 16–256 tokens)
_PREFIX = ("You are a careful grader of answers about long documents. " * 40).strip()

# what the judge asks of one call by default, and the completeness chunk (ScoreOptions)
_JUDGE_MAX_TOKENS = 2048
_CHUNK_TOKENS = 4096
_PROMPT_OVERHEAD = 1500


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not known / not checked
    detail: str


@dataclass
class ProbeReport:
    base_url: str
    model: str
    checks: list[Check] = field(default_factory=list)
    structured_mode: str | None = None
    context_window: int | None = None
    n_supported: bool | None = None
    cached_tokens_reported: bool | None = None
    latency_s: float | None = None
    #: the model ids /models lists
    served_models: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    fatal: str | None = None

    @property
    def works(self) -> bool:
        """Chat requests go through."""
        return any(c.name == "chat works" and c.ok for c in self.checks)

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        self.checks.append(Check(name, ok, redact(detail)))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "works": self.works}


def window_from_models(entries: list[dict[str, Any]], model: str) -> int | None:
    """The context window a ``/v1/models`` entry states for ``model`` (or for the only
    model served), if any."""
    entry = next((e for e in entries if e.get("id") == model), None)
    if entry is None and len(entries) == 1:
        entry = entries[0]
    if entry is None:
        return None
    for where in (entry, entry.get("meta") or {}, entry.get("top_provider") or {}):
        if not isinstance(where, dict):
            continue
        for key in _WINDOW_KEYS:
            value = where.get(key)
            if isinstance(value, int | float) and value > 0:
                return int(value)
    return None


def window_from_error(text: str) -> int | None:
    match = _WINDOW_IN_ERROR.search(text)
    return int(match.group(1).replace(",", "")) if match else None


async def probe_endpoint(api: Any, *, timeout: float = 60.0, check_context: bool = True
                         ) -> ProbeReport:
    """Probe the endpoint ``api`` (an ``OpenAICompatibleAPI``). Never raises for what the
    endpoint does; the report says it."""
    report = ProbeReport(base_url=redact(api.base_url or ""), model=api.model)
    client = ModelClient(api, max_retries=1, backoff_base=0.2, timeout=timeout,
                         structured_output="auto", probe_timeout=timeout)
    async with client:
        await _run_checks(client, api, report, check_context)
    report.suggestions = suggestions(report)
    return report


async def _run_checks(client: ModelClient, api: Any, report: ProbeReport,
                      check_context: bool) -> None:
    # 1. reachable, model listed
    entries: list[dict[str, Any]] = []
    try:
        entries = await api.list_models()
    except EndpointUnreachableError as exc:
        report.add("reachable", False, str(exc))
        report.fatal = f"{report.base_url} is not reachable: {exc}"
        return
    except ModelError as exc:
        report.add("reachable", True, f"answers, but /models failed: {exc}")
    else:
        report.add("reachable", True, f"/models lists {len(entries)} model(s)")
    ids = [str(e.get("id")) for e in entries if e.get("id")]
    report.served_models = ids
    if ids:
        listed = report.model in ids
        shown = ", ".join(ids[:5]) + (" …" if len(ids) > 5 else "")
        report.add("model listed", listed, "yes" if listed else f"no; served: {shown}")
    else:
        report.add("model listed", None, "the server lists no models")
    report.context_window = window_from_models(entries, report.model)
    own = await api.server_sampling()  # read from the listing above: no second request
    if own:  # llama-cpp-python's server penalises repeats unless told otherwise
        report.add("sampling as asked", True, "its default sampling departs from OpenAI's; "
                   f"every request carries {own}")

    # 2. chat, latency, usage
    hello = [Message(role="user", content="Reply with the single word OK.")]
    try:
        start = time.perf_counter()
        out = await client.generate(hello, GenerateConfig(max_tokens=8), tag="chat")
        report.latency_s = time.perf_counter() - start
    except JudgeFatalError as exc:
        report.add("chat works", False, str(exc))
        report.fatal = str(exc)
        return
    except ModelError as exc:
        report.add("chat works", False, str(exc))
        return
    report.add("chat works", True, f"{report.latency_s * 1000:.0f} ms for a short reply: "
                                   f"{out.text.strip()[:40]!r}")
    usage = out.usage
    report.add("usage reported", usage.prompt_tokens > 0,
               f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
               if usage.prompt_tokens else "no token counts in the reply (cost estimates and "
                                           "--tpm pacing fall back to estimates)")

    # 3. structured output: the same detection score runs
    try:
        mode = await client.detect_structured_output()
    except JudgeFatalError as exc:
        report.add("structured output", False, str(exc))
        return
    report.structured_mode = mode
    report.add("structured output", mode is not None and mode != "text",
               {None: "unknown: the probe got no answer",
                "json_schema": "json_schema (response_format with a JSON schema)",
                "json_object_schema": "json_object with schema (llama.cpp style, grammar)",
                "json_object": "json_object without schema (the prompt gives the shape)",
                "text": "none: tagged-text replies"}[mode])

    # 4. n > 1
    try:
        two = await client.generate(hello, GenerateConfig(n=2, temperature=0.8, max_tokens=8),
                                    tag="n")
        report.n_supported = len(two.texts) >= 2
        report.add("n>1 supported", report.n_supported,
                   f"asked n=2, got {len(two.texts)} choice(s)")
    except ModelError as exc:
        report.n_supported = False
        report.add("n>1 supported", False, f"n=2 refused: {exc}")

    # 5. cached prompt tokens: the same long prefix twice
    cached = [Message(role="system", content=_PREFIX), hello[0]]
    try:
        await client.generate(cached, GenerateConfig(max_tokens=1), tag="cache")
        again = await client.generate(cached, GenerateConfig(max_tokens=1), tag="cache",
                                      attempt=1)
        report.cached_tokens_reported = again.usage.cached_tokens > 0
        report.add("cached tokens reported", report.cached_tokens_reported,
                   f"{again.usage.cached_tokens} of {again.usage.prompt_tokens} prompt tokens "
                   "cached on a repeat (a prefix cache is on)" if report.cached_tokens_reported
                   else "none on a repeated prompt: prefix cache off, or not reported")
    except ModelError as exc:
        report.add("cached tokens reported", None, f"not checked: {exc}")

    # 6. context window
    if report.context_window is not None:
        report.add("context window", True, f"{report.context_window:,} tokens (from /models)")
    elif check_context:
        long = [Message(role="user", content="word " * _LONG_PROMPT_WORDS)]
        try:
            await client.generate(long, GenerateConfig(max_tokens=1), tag="context")
        except ContextTooLongError as exc:
            report.context_window = window_from_error(str(exc))
            report.add("context window", report.context_window is not None,
                       f"{report.context_window:,} tokens (from the error)"
                       if report.context_window else f"refused a long prompt: {exc}")
        except ModelError as exc:
            report.add("context window", None, f"unknown; a long prompt got: {exc}")
        else:
            report.add("context window", True,
                       f"more than {_LONG_PROMPT_WORDS:,} tokens (a prompt that long went "
                       "through)")
    else:
        report.add("context window", None, "not stated by /models; not checked")


def suggestions(report: ProbeReport) -> list[str]:
    """Flags that follow from the report."""
    if report.fatal and not report.works:
        if "API key" in report.fatal:
            return ["--api-key-env NAME   (the variable holding the key; or set "
                    "LONGREWARD_API_KEY)", "--header KEY=VALUE   (if the server needs one)"]
        if "not reachable" in report.fatal:
            return ["check that the server runs and that --base-url (ending in /v1) is right"]
        return []
    out = [f"--base-url {report.base_url} --model {report.model}"]
    if len(report.served_models) == 1 and report.model not in report.served_models:
        # Single-model servers (llama.cpp, some vLLM setups) answer whatever name is sent;
        # the listed name is the one that keeps working when the server is shared or moved.
        # (A server that lists several models gets no guess: any one would be arbitrary.)
        too = f"; it answered for {report.model!r} too" if report.works else ""
        out = [f"--base-url {report.base_url} --model {report.served_models[0]}   (the name "
               f"the server lists{too})"]
    mode = report.structured_mode
    if mode not in (None, "json_schema"):
        out.append(f"--structured-output {mode}   (score's default 'auto' finds it too, with "
                   "one probe per run directory)")
    if report.n_supported is False:
        out.append("sample: --n-per-request 1   (the server ignores or refuses n > 1)")
    window = report.context_window
    if window is not None:
        if window < _JUDGE_MAX_TOKENS + _PROMPT_OVERHEAD + 512:
            out.append(f"--max-tokens {max(64, window // 4)}   (a short window: leave room "
                       "for the prompt)")
        elif window < _CHUNK_TOKENS + _JUDGE_MAX_TOKENS + _PROMPT_OVERHEAD:
            chunk = max(256, (window - _JUDGE_MAX_TOKENS - _PROMPT_OVERHEAD) // 256 * 256)
            out.append(f"--completeness-chunk-tokens {chunk}   (the default 4096-token "
                       f"chunks do not fit a {window}-token window with the reply)")
    if report.latency_s is not None and report.latency_s > 5:
        out.append("--concurrency 4   (replies are slow; fewer requests in flight keep "
                   "timeouts away)")
    return out
