"""``ModelClient``: the one path every model call takes, and the judge's ask/parse protocol.

The client composes the parts that live in their own modules:

- transport (``_transport``): endpoint choice, a concurrency cap per endpoint, timeouts, and
  endpoint health (a dead endpoint is reported at once);
- the call cache (``_cache``): keys, lookups, single-flight of equal requests;
- retries and limits (``_retries``): tenacity's retry loop with full jitter and a capped
  ``Retry-After``, aiolimiter's request and token limits, and fail-fast (``JudgeFatalError``);
- accounting (``_accounting``): per-tag counters, usage, cost;
- the structured-output ladder (``_ladder``).

Providers (``ModelAPI``) only turn one request into one ``ModelOutput`` or one ``ModelError``.

``ModelClient.ask`` is the judge protocol on top: ask for a JSON reply in the best format the
endpoint takes (json_schema → json_object with schema → json_object → tagged text, found once
per endpoint) and validate it with pydantic, or parse tagged text; re-ask an unparsable reply,
first at the caller's temperature (≈0) and then at a higher one, as the LongReward reference
does (5 tries, T≈0 then 0.95). A judge that still fails yields ``Asked(value=None, error=...)``
with every raw reply kept and a ``cause`` ("answer" when the judged text made the verdict
unreadable or provoked a refusal, else "judge"): a result, never an exception and never a
default score. Only what no retry can fix (``JudgeFatalError``) raises.

With a ``nonce`` (``ModelClient.nonce``), the JSON schema requires it (``const``) and the
verdict carrying it is the judge's own; which path found the verdict is in ``Asked.path``
(see ``_verdict``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .._util.redact import install_log_filter, redact
from .._util.text import short as _short
from ._accounting import ClientStats, Price, TagStats, estimate_tokens
from ._cache import CachedCalls, CacheKeys, CallCache, canonical
from ._expected import trim
from ._ladder import (
    PROBE_AGAIN_S,
    PROBE_CONFIG,
    PROBE_MESSAGES,
    PROBE_SCHEMA,
    PROBE_TIMEOUT_S,
    Ladder,
    find_mode,
    request,
)
from ._provider import ModelAPI
from ._retries import FailFast, RateLimits, RetryPolicy
from ._transport import Endpoint, Transport
from ._types import (
    Cause,
    GenerateConfig,
    JsonSchema,
    Message,
    ModelError,
    ModelOutput,
    PermanentError,
    ReplyMode,
    ReplyParseError,
    RetryableError,
    SchemaUnsupportedError,
    StructuredMode,
    StructuredOutput,
    TokenLogprob,
    Usage,
    reply_mode_of,
)
from ._verdict import (
    CopyCheck,
    Path,
    blame,
    copied_reply,
    is_content_filter,
    locate_json,
    make_nonce,
    parse_json_reply,
    refusal_cause,
    schema_with_nonce,
    text_path,
    verdict_secret,
)

logger = logging.getLogger("longreward.judge")
install_log_filter("longreward", "longreward.judge")

# Names that lived here before the split, importable from here for one release.
__all__ = ["Asked", "CallCache", "ClientStats", "ModelClient", "Price", "ReplyMode",
           "StructuredOutput", "TagStats", "json_schema_of", "parse_json_reply"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


@dataclass
class Asked(Generic[T]):
    """The outcome of ``ModelClient.ask``: a parsed reply, or ``value=None`` and a reason."""

    value: T | None
    error: str | None = None
    raw: list[str] = field(default_factory=list)  # every reply seen, in order
    mode: ReplyMode = "json"
    usage: Usage = field(default_factory=Usage)  # of the requests this ask sent (not cache hits)
    calls: int = 0  # generate() calls that returned an output (cached or not)
    attempts: int = 0  # replies judged (the one that parsed included)
    #: how the verdict was found ("nonce" or "fallback"; None without a value)
    path: Path | None = None
    #: why there is no value ("answer", "judge"); None with a value
    cause: Cause | None = None
    #: replies set aside as copies of the judged text (``copied_reply``) and re-asked
    copied: int = 0
    #: the token log-probabilities of the reply that parsed (when asked for and given)
    tokens: list[TokenLogprob] | None = None
    #: JSON replies: where the verdict object is in that reply (text replies: None; the
    #: dimension's parser knows where its verdict line is)
    span: tuple[int, int] | None = None
    #: the call-cache key of that reply, when it is cached with log-probabilities (for
    #: ``ModelClient.keep_logprobs``)
    key: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


#: how far re-asks may grow the token budget of a reply that was cut before its verdict:
#: up to 4x the configured budget, never past 2048 tokens (the default budget) unless the
#: configured one is larger. A judge reply cut at 2048 tokens is far more often a loop than
#: an analysis still going, and more tokens would only make it a longer loop.
CUT_BUDGET_GROWTH = 4
CUT_BUDGET_MAX = 2048
#: a reply whose end repeats one piece of text (up to 500 characters) 3 times or more has
#: looped: SmolLM2's "1.1.1.1…", the same list item again and again; the 1.5B judge's
#: 215-character pair of sentences, over and over to its 2048th token. More tokens would
#: not end it.
_LOOP = re.compile(r"(.{1,500}?)\1{2,}", re.DOTALL)


def looped(text: str) -> str | None:
    """The repeated piece when ``text`` ends in a loop (see ``_LOOP``), else None."""
    tail = text[-3000:]
    for m in _LOOP.finditer(tail):
        # the loop must run to the end (the last repeat may be cut partway)
        if len(tail) - m.end() < len(m.group(1)) and m.end() - m.start() >= 24:
            return m.group(1)
    return None


def cut_reply(used: int | None, configured: int | None, text: str = ""
              ) -> tuple[str, int | None]:
    """Why a reply cut at the token budget ``used`` is unread, and the budget of the re-ask:
    twice ``used`` within the limits above, unless the reply ``text`` ended in a loop (the
    re-ask, sampled, may not loop; a larger budget would not help if it did). (The paper's
    code re-asks at the same length; a reply that ran out of tokens before its verdict mostly
    runs out again.) With no budget of ours, the server's own limit cut it and stays."""
    loop = looped(text)
    if loop is not None:
        return (f"the reply looped ({_short(loop * 3, 40)!r}…) until max_tokens={used}, "
                "before its verdict", used)
    if used is None or configured is None:
        return ("the reply was cut by the server's token limit before its verdict; set "
                "max_tokens (--max-tokens)", used)
    ceiling = max(configured, min(CUT_BUDGET_GROWTH * configured, CUT_BUDGET_MAX))
    grown = min(2 * used, ceiling)
    then = (f"re-asked with {grown}" if grown > used else
            "the largest budget re-asks get; raise --max-tokens if the judge was not looping")
    return f"the reply was cut at max_tokens={used} before its verdict ({then})", grown


@functools.lru_cache(maxsize=256)
def json_schema_of(model: type[BaseModel]) -> JsonSchema:
    """The reply model's JSON schema, built once per model (pydantic rebuilds it on every
    call, which cost ~8% of the client's CPU per ask). Shared: do not mutate it."""
    return model.model_json_schema()


class ModelClient:
    """The one path for every model call. See the module docstring.

    A client belongs to one event loop (its semaphores and the HTTP connections do).
    ``fatal_after``: the same permanent error on this many calls in a row stops the run.
    ``max_retry_after``: the longest ``Retry-After`` honoured, in seconds.
    """

    def __init__(
        self,
        apis: ModelAPI | list[ModelAPI],
        *,
        cache: CallCache | None = None,
        max_concurrency: int | None = None,
        rpm: float | None = None,
        tpm: float | None = None,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 120.0,
        timeout: float = 300.0,
        prices: Price | None = None,
        structured_output: StructuredOutput = "auto",
        fatal_after: int = 5,
        probe_timeout: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.apis: list[ModelAPI] = [apis] if isinstance(apis, ModelAPI) else list(apis)
        if not self.apis:
            raise ValueError("ModelClient needs at least one ModelAPI")
        identities = {canonical(api.cache_identity()) for api in self.apis}
        if len(identities) > 1:
            # Endpoints are interchangeable replicas; mixing models would make results depend
            # on which endpoint happened to be least busy.
            raise ValueError(
                "all endpoints of one ModelClient must serve the same provider and model; "
                f"got {sorted(identities)}"
            )
        self.cache = cache
        self.timeout = timeout
        self.prices = prices
        self.structured_output: StructuredOutput = structured_output
        self.probe_timeout = probe_timeout
        self.stats = ClientStats()
        self._ladder = Ladder(structured_output, self.apis)
        self._retry = RetryPolicy(self.stats, max_retries=max_retries, backoff_base=backoff_base,
                                  backoff_max=backoff_max, max_retry_after=max_retry_after)
        self._limits = RateLimits(rpm, tpm)
        self._fail_fast = FailFast(fatal_after)
        self._transport = Transport(self.apis, self.stats, max_concurrency=max_concurrency,
                                    timeout=timeout)
        self._keys = CacheKeys(self.apis[0].cache_identity())
        self._cached = CachedCalls(self.stats)
        self._secret: tuple[object, bytes] | None = None

    def nonce(self, content: str) -> str:
        """The nonce of a request whose content is ``content``: derived from the secret of
        this client's run store (made once per store; a rerun gets the same nonces and hits
        the cache), or of this process when there is no store. See ``_verdict``."""
        cache = self.cache
        if self._secret is None or self._secret[0] is not cache:
            self._secret = (cache, verdict_secret(cache))
        return make_nonce(self._secret[1], content)

    @property
    def max_retries(self) -> int:
        return self._retry.max_retries

    @property
    def reply_mode(self) -> ReplyMode:
        """The prompt ``ask`` uses now: "text" once forced or once no JSON format is taken."""
        return reply_mode_of(self._ladder.current())

    @property
    def structured_mode(self) -> StructuredMode | None:
        """The structured-output rung in use, or None while it is not known yet."""
        return self._ladder.mode

    # ------------------------------------------------------------------ generate

    def cache_key(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
        attempt: int = 0,
        structured: StructuredMode | None = None,
    ) -> str:
        """sha256 of (provider+model, messages, config, schema, attempt). No URLs, no keys."""
        return self._keys.key(messages, config, json_schema, attempt, structured)

    async def generate(
        self,
        messages: list[Message],
        config: GenerateConfig,
        json_schema: JsonSchema | None = None,
        *,
        tag: str = "",
        attempt: int = 0,
        structured: StructuredMode | None = None,
    ) -> ModelOutput:
        """One model call through the cache, the limiters and the retry loop.

        ``attempt`` only enters the cache key: a re-ask of an unparsable reply at the same
        settings must reach the model instead of getting the same bad reply from the cache.
        ``structured`` is the ladder rung to send ``json_schema`` in (default json_schema).
        Raises the last ``ModelError`` when retries run out, a ``PermanentError`` at once, and
        ``JudgeFatalError`` when no later call can succeed either.
        """
        if self._fail_fast.error is not None:
            raise self._fail_fast.error
        if self.cache is None:
            return await self._generate(messages, config, json_schema, tag, structured, attempt)
        key = self._keys.key(messages, config, json_schema, attempt, structured)
        return await self._cached.get_or_call(
            self.cache, key, tag,
            lambda: self._generate(messages, config, json_schema, tag, structured, attempt))

    async def _generate(self, messages: list[Message], config: GenerateConfig,
                        json_schema: JsonSchema | None, tag: str,
                        structured: StructuredMode | None, attempt: int) -> ModelOutput:
        started = time.perf_counter()
        estimate = estimate_tokens(messages)
        mode: StructuredMode | None = structured or ("json_schema" if json_schema else None)

        async def on(ep: Endpoint) -> ModelOutput:
            out = await request(ep.api, messages, config, json_schema, mode)
            if mode is not None:
                self._ladder.accepted(self.cache, ep.api, mode)
            return out

        out, charged = await self._run(on, estimate, tag)
        self.stats._add_usage(tag, out.usage)
        self.stats.slowest.add(time.perf_counter() - started, tag, out.usage, attempt=attempt)
        if self._limits.active:
            used = out.usage.total_tokens or estimate + sum(len(t) for t in out.texts) // 4
            await self._limits.after(charged, used)
        return out

    async def embed(self, texts: list[str], *, tag: str = "embed") -> list[list[float]]:
        """Embeddings of ``texts`` through the same endpoints, limiters and retries as
        ``generate`` (used by the API-embedding retriever). Not cached: embeddings are
        cheap next to judge calls, and an index is built once per document anyway."""
        if self._fail_fast.error is not None:
            raise self._fail_fast.error
        estimate = sum(len(t) for t in texts) // 4 + 1
        out, _ = await self._run(lambda ep: ep.api.embed(texts), estimate, tag)
        # An estimate, kept under its own tag only: the run's token totals and the cost
        # estimate are the judge's (``prices`` are chat prices, not embedding prices).
        tagged = self.stats.tag(tag)
        tagged.usage = tagged.usage + Usage(prompt_tokens=estimate)
        return out

    async def _run(self, on: Callable[[Endpoint], Awaitable[R]], estimate: int,
                   tag: str) -> tuple[R, int]:
        """``on(endpoint)`` through the limiters, the transport and the retry loop; returns
        its result and the tokens charged to the limiter so far."""
        charged = 0

        async def before() -> None:
            nonlocal charged
            charged = await self._limits.before(estimate)

        hook = before if self._limits.active else None
        try:
            out = await self._retry.run(
                lambda: self._transport.send(on, tag=tag, before=hook), tag)
        except SchemaUnsupportedError as exc:
            # a refused format is the ladder's business (nothing failed) unless it is forced
            self._fail_fast.check(exc, negotiating=self._ladder.fixed is None)
            raise
        except ModelError as exc:
            self.stats._bump(tag, "failures")
            if not exc.retryable and is_content_filter(str(exc)):
                # one request's content refused, like a prompt too long for the window: not
                # the judge's state (else a few answers in a row could stop a whole run)
                raise
            self._fail_fast.check(exc)  # raises JudgeFatalError when retrying cannot help
            raise
        self._fail_fast.success()
        return out, charged

    # ------------------------------------------------------------------ structured output

    async def detect_structured_output(self) -> StructuredMode | None:
        """The structured-output rung this client's endpoints take: forced, recorded in the
        run store, or found now by one probe (None if the probe got no answer). ``ask``
        does this by itself; ``longreward probe`` calls it to report the same answer."""
        await self._ensure_mode()
        return self._ladder.mode

    async def _ensure_mode(self) -> None:
        """Find the structured-output rung if it is not known: from the run store, else by
        one probe shared by every ask that waits for it."""
        ladder = self._ladder
        if ladder.mode is not None:
            return
        ladder.load(self.cache, self.apis)
        if ladder.mode is not None or not ladder.probes:
            return
        if ladder.probe_task is None:
            if time.monotonic() < ladder.probe_again_at:
                return  # the last probe got no answer; the asks go on at the top rung
            task = asyncio.ensure_future(self._probe())
            task.add_done_callback(self._probe_done)
            ladder.probe_task = task
        await asyncio.shield(ladder.probe_task)

    def _probe_done(self, task: asyncio.Future[None]) -> None:
        self._ladder.probe_task = None
        if not task.cancelled():
            task.exception()  # retrieved: the waiters re-raise it themselves

    async def _probe(self) -> None:
        ladder = self._ladder
        ep = self._transport.pick()
        timeout = min(self.timeout, self.probe_timeout)

        async def send(mode: StructuredMode) -> ModelOutput:
            async def on(e: Endpoint) -> ModelOutput:
                return await request(e.api, PROBE_MESSAGES, PROBE_CONFIG, PROBE_SCHEMA, mode)

            try:
                out = await self._transport.send(on, tag="probe", timeout=timeout, endpoint=ep)
            except ModelError as exc:
                if not isinstance(exc, (SchemaUnsupportedError, RetryableError)):
                    self._fail_fast.check(exc)  # a refused key or unknown model: stop now
                raise
            self.stats._add_usage("probe", out.usage)
            return out

        try:
            mode, refused = await find_mode(
                send, ladder.rungs, lambda m, exc: ladder.refused(m, exc, quiet=True))
        except (RetryableError, PermanentError) as exc:
            ladder.probe_again_at = time.monotonic() + PROBE_AGAIN_S
            logger.warning(
                "could not find which reply format %s takes (%s%s); going on with %s and the "
                "normal retries", ep.label, "no answer: " if exc.retryable else "",
                _short(redact(str(exc)), 160), ladder.current())
            return
        ladder.accepted(self.cache, ep.api, mode)
        refusals = f" (refused: {', '.join(refused)})" if refused else ""
        if mode == "text":
            logger.warning("%s takes no JSON reply format%s; using tagged-text replies",
                           ep.label, refusals)
        else:
            logger.info("%s: structured output %s%s", ep.label, mode, refusals)

    # ------------------------------------------------------------------ ask

    async def ask(
        self,
        build_messages: Callable[[ReplyMode], list[Message]],
        reply_model: type[T],
        parse_text: Callable[[str], T],
        *,
        tag: str,
        config: GenerateConfig | None = None,
        attempts: int = 5,
        retry_temperature: float = 0.95,
        nonce: str | None = None,
        copy_check: CopyCheck | None = None,
    ) -> Asked[T]:
        """Ask for a reply of type ``reply_model``; never raises for a judge failure (only
        ``JudgeFatalError``, which stops the run).

        ``build_messages(mode)`` builds the prompt for "json" (a JSON reply, whichever JSON
        rung carries the request) or "text" (tagged reply parsed by ``parse_text``, which
        raises ``ReplyParseError``). ``nonce``: the request's nonce, which the prompt asks the
        judge to write into its verdict (required in the JSON schema). ``copy_check``: when
        given, a reply whose ``analysis`` is copied from the judged text's judge-like parts or
        reproduces a span flagged as addressed to the grader is not the judge's own
        (``copied_reply``): it is re-asked, and when every attempt copies, the failure is the
        answer's.
        """
        config = config or GenerateConfig()
        schema = json_schema_of(reply_model)
        if nonce is not None:
            schema = schema_with_nonce(schema, nonce)
        self.stats._bump(tag, "asks")
        await self._ensure_mode()
        mode: ReplyMode = self.reply_mode
        messages = build_messages(mode)
        raw: list[str] = []
        reasons: list[str] = []
        usage = Usage()
        calls = 0
        attempt = 0
        #: set once the judged text made a reply unreadable or provoked a refusal: why
        answer_caused: str | None = None
        copied = 0
        #: the re-asks' token budget: grown after a reply the budget cut before its verdict
        budget = config.max_tokens

        def outcome(**fields: Any) -> Asked[T]:
            """The ask's outcome, with the counts so far."""
            return Asked(mode=mode, usage=usage, calls=calls, attempts=attempt, copied=copied,
                         **fields)

        def give_up(reason: str, cause: Cause = "judge") -> Asked[T]:
            self.stats._bump(tag, "unscored")
            if cause == "answer":
                self.stats._bump(tag, "answer_caused")
            return outcome(value=None, error=redact(reason), raw=[redact(r) for r in raw],
                           cause=cause)

        while attempt < attempts:
            wire = self._ladder.current()
            if reply_mode_of(wire) != mode:  # another ask stepped the ladder down meanwhile
                mode = reply_mode_of(wire)
                messages = build_messages(mode)
            # A re-ask samples (T=retry_temperature) with a seed fixed by the attempt (offset
            # from the caller's seed, if any): where the server honours seeds, the same
            # request gets the same re-ask reply on every run, online or in batch mode.
            settings = (
                config
                if attempt == 0
                else config.model_copy(update={"temperature": retry_temperature,
                                               "seed": (config.seed or 0) + attempt,
                                               "max_tokens": budget})
            )
            try:
                out = await self.generate(messages, settings, None if wire == "text" else schema,
                                          tag=tag, attempt=attempt, structured=wire)
            except SchemaUnsupportedError as exc:
                if self._ladder.refused(wire, exc):
                    continue  # the refused request produced no reply; not an attempt
                return give_up(
                    f"the endpoint refused the request format {wire} ({_short(str(exc))}); "
                    "use structured_output='auto' or 'text'"
                )
            except ModelError as exc:
                kind = "retries exhausted" if exc.retryable else "permanent error"
                cause: Cause = "judge"
                if not exc.retryable and is_content_filter(str(exc)):
                    # the provider's content filter refused the request: blamed on the
                    # answer when the request carried one (see ``refusal_cause``)
                    kind, cause = "refused by a content filter", refusal_cause(messages)
                return give_up(
                    f"model call failed ({kind}, {type(exc).__name__}): {_short(str(exc))}",
                    "answer" if answer_caused else cause)
            calls += 1
            if not out.cached:
                usage = usage + out.usage
            text = out.text
            raw.append(text)
            attempt += 1
            finish = out.finish_reasons[0] if out.finish_reasons else None
            if is_content_filter("", finish):
                reason = "the judge's content filter stopped the reply"
                if refusal_cause(messages) == "answer":
                    answer_caused = answer_caused or reason
            elif not text.strip():
                reason = "empty reply"
            else:
                try:
                    span = None
                    if mode == "json":
                        found = locate_json(text, reply_model, messages, nonce)
                        value, path, span = found.value, found.path, found.span
                    else:
                        value, path = parse_text(text), text_path(text, nonce)
                except (ReplyParseError, ValidationError) as exc:
                    reason, cause = blame(text, exc, messages)
                    if cause == "answer":
                        answer_caused = answer_caused or reason
                    elif finish == "length":
                        # Cut by the token budget before its verdict: the same budget would
                        # most likely cut the re-ask too, so it gets a larger one.
                        reason, budget = cut_reply(settings.max_tokens, config.max_tokens,
                                                   text)
                        self.stats._bump(tag, "cut")
                else:
                    copy = self._copy(value, copy_check)
                    if copy is None:
                        self.stats._bump(tag, f"{path}_verdicts")
                        return outcome(
                            value=value, error=None, raw=raw, path=path,
                            tokens=out.logprobs[0] if out.logprobs else None, span=span,
                            key=self._keys.key(messages, settings,
                                               None if wire == "text" else schema,
                                               attempt - 1, wire)
                            if self.cache is not None and out.logprobs else None)
                    # parsed, but the answer's words, not the judge's: re-ask
                    reason, answer_caused = copy, answer_caused or copy
                    copied += 1
                    self.stats._bump(tag, "copied")
            reasons.append(reason)
            self.stats._bump(tag, "unparsable")
            logger.debug("unparsable %s reply (attempt %d/%d): %s", tag, attempt, attempts, reason)
        last = reasons[-1] if reasons else "no attempt was made"
        if answer_caused is None:
            return give_up(f"no parsable reply after {attempt} attempt(s); last problem: {last}")
        # One reply made unreadable by the judged text is enough to blame it: the other
        # attempts may fail for reasons of their own, but the answer showed it interferes.
        extra = "" if answer_caused == last else f"; last problem: {last}"
        return give_up(f"no parsable reply after {attempt} attempt(s); the judged text made "
                       f"it unreadable: {answer_caused}{extra}", "answer")

    @staticmethod
    def _copy(value: Any, check: CopyCheck | None) -> str | None:
        """Why the parsed reply ``value`` is not the judge's own (``copied_reply``), or None;
        only checked when the caller asked (``copy_check``)."""
        analysis = getattr(value, "analysis", None)
        if check is None or not isinstance(analysis, str):
            return None
        return copied_reply(analysis, check)

    def keep_logprobs(self, key: str | None, window: tuple[int, int] | None) -> None:
        """Keep, in the cached reply under ``key``, the alternatives of the tokens in
        ``window`` (token indices, end excluded; None: none) and drop the others': a reply's
        log-probabilities with 10 alternatives per token cost ~70 times its text in the run
        store, and a verdict needs two tokens' worth (``_expected.trim``). The tokens' own
        strings and log-probabilities stay, so the reply still aligns on a rerun."""
        replace = getattr(self.cache, "replace_call", None)
        if key is None or replace is None:
            return  # a cache that can only add (the run store can replace)
        hit = self.cache.get_call(key)
        if not hit or not hit.get("logprobs"):
            return
        out = ModelOutput.model_validate(hit)
        lists = out.logprobs or []
        out.logprobs = [trim(t, out.texts[i], window) if i == 0 and t else t
                        for i, t in enumerate(lists)]
        replace(key, out.model_dump())

    # ------------------------------------------------------------------ accounting

    def cost_usd(self) -> float | None:
        """Cost of the requests sent so far (cache hits are free), or None without prices."""
        return self.prices.cost(self.stats.total.usage) if self.prices else None

    def snapshot(self) -> dict[str, Any]:
        """Counters, cost and endpoint notices, for progress displays (any thread)."""
        self._transport.check_stalled()
        return self.stats.snapshot(self.prices)

    async def aclose(self) -> None:
        for api in self.apis:
            await api.aclose()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
