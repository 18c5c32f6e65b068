"""``ServeOptions``: what ``longreward serve`` (and the in-process adapters) are run with.

The judge and scoring options are the very ``ScoreOptions`` of ``longreward score``, under
``score:``; the rest says how the service is reached and how it protects itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import ScoreOptions, deep_merge, load_config_file
from ..errors import ConfigError

#: the environment variable whose value, when set, is the bearer token clients must send
DEFAULT_TOKEN_ENV = "LONGREWARD_SERVE_TOKEN"

#: end-of-turn and padding tokens a chat template leaves at the end of a decoded OpenRLHF
#: ``query``; they are not part of the answer the judge should read
DEFAULT_STRIP_SUFFIXES = [
    "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>", "</s>",
    "<end_of_turn>", "<eos>", "<|user|>", "<|observation|>", "<｜end▁of▁sentence｜>",
    "<|return|>", "<pad>", "<|pad|>", "<|finetune_right_pad_id|>",
]


class Deadlines(BaseModel):
    """Seconds a number-only protocol's request may take, each below its client's own
    timeout (with room for the reply): unfinished samples get the neutral reward in time,
    instead of the client giving up and sending again work that is still running."""

    model_config = ConfigDict(extra="forbid")

    #: OpenRLHF's client gives up after 180 s (aiohttp ``total=180`` in 0.9.1+, requests
    #: ``timeout=180`` in 0.9.0) and retries 5 times
    openrlhf: float = Field(default=150.0, gt=0)
    #: slime's client session has ``ClientTimeout(total=120)`` and retries 10 times
    slime: float = Field(default=100.0, gt=0)
    #: verl's ``rate_limited`` manager gives a sample 0.0 after ``reward.timeout`` (300 s), its
    #: ``prime`` manager after 300 s; its other managers wait for ever
    verl: float = Field(default=240.0, gt=0)


class NeutralOptions(BaseModel):
    """How the neutral reward is found (``serve._neutral``)."""

    model_config = ConfigDict(extra="forbid")

    #: judged rewards of a prompt this recent (seconds) make its group mean
    window: float = Field(default=600.0, gt=0)
    #: the neutral reward before any reward was judged
    prior: float = 5.0
    #: the trainer's samples per prompt (OpenRLHF ``--rollout.n_samples_per_prompt``, slime
    #: ``--n-samples-per-prompt``, verl ``actor_rollout_ref.rollout.n``): a sample that
    #: cannot be scored then waits, within its deadline, until its whole group has been seen,
    #: so that its reward is the group's exact mean. None: fill it with what is known then.
    group_size: int | None = Field(default=None, ge=2)
    #: the longest a failed sample waits for group members that have not arrived yet
    #: (seconds, within its deadline): a group smaller than ``group_size`` — an evaluation
    #: with fewer samples per prompt, a one-off request — is not held up longer than this
    max_wait: float = Field(default=30.0, ge=0)


class ServeOptions(BaseModel):
    """Options of the reward service. A YAML/TOML file and the CLI flags fill this model."""

    model_config = ConfigDict(extra="forbid")

    #: judge, dimensions, weights, retrieval... exactly as for ``longreward score``
    score: ScoreOptions = Field(default_factory=ScoreOptions)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: run store: the judge-call cache and the registered documents, kept across restarts.
    #: None keeps both in memory only.
    run_dir: Path | None = Path("serve.run")
    #: prompts file (rows of id, context, query) registered at start; it wins over an
    #: earlier registration of the same id
    prompts: Path | None = None
    #: name of the environment variable holding the bearer token (never the token itself:
    #: it must not end up in a shared config). With the default name, auth is on when the
    #: variable is set; a name given explicitly must be set.
    auth_token_env: str = DEFAULT_TOKEN_ENV
    #: larger request bodies get 413 before they are read
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: per-request deadline, seconds (native /score and TRL; it also caps ``deadlines``):
    #: items not scored by then come back unscored with the reason (the judge calls already
    #: made stay cached, so a retry is cheaper)
    request_timeout: float = Field(default=600.0, gt=0)
    #: the deadlines of the number-only protocols, below their clients' timeouts
    deadlines: Deadlines = Field(default_factory=Deadlines)
    #: a client must send its request headers within this many seconds of connecting (or of
    #: the previous response), and its body may not stall longer: a slow client cannot hold
    #: connections open (slowloris)
    read_timeout: float = Field(default=10.0, gt=0)
    #: requests handled at once; more get 503 with Retry-After (judge calls are limited
    #: separately by ``score.judge.max_concurrency``)
    max_concurrent_requests: int = Field(default=1024, ge=1)
    #: seconds a client is told to wait (Retry-After) when the service is saturated
    retry_after: int = Field(default=5, ge=0)
    #: a fixed reward for an item that could not be scored, on every route. Without it,
    #: number-only protocols (OpenRLHF, slime, verl) send the neutral reward and the native
    #: /score and TRL send null. The item still says ``mask: 0`` and why; every use is logged
    #: and counted in the metrics.
    fallback_reward: float | None = None
    #: the neutral reward of the number-only protocols (``serve._neutral``)
    neutral: NeutralOptions = Field(default_factory=NeutralOptions)
    #: documents whose chunks and retrieval index stay in memory (least recently used out)
    cached_documents: int = Field(default=256, ge=1)
    #: removed (repeatedly) from the end of an OpenRLHF response before judging
    strip_suffixes: list[str] = Field(default_factory=lambda: list(DEFAULT_STRIP_SUFFIXES))

    @field_validator("strip_suffixes")
    @classmethod
    def _no_empty_suffix(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("strip_suffixes must not contain an empty string")
        return v

    def auth_token(self) -> str | None:
        """The bearer token (None: no auth). Read from the environment at start."""
        token = os.environ.get(self.auth_token_env)
        if token:
            return token
        if self.auth_token_env != DEFAULT_TOKEN_ENV:
            raise ConfigError(f"auth_token_env names ${self.auth_token_env}, which is not set; "
                              f"set it to the token clients must send, or drop auth_token_env")
        return None


def read_serve_config(path: str | Path | None) -> dict[str, Any]:
    """A serve config file as a dict, its relative paths (``run_dir``, ``prompts``) made
    absolute against the file's directory, so the server finds them wherever it starts."""
    if path is None:
        return {}
    path = Path(path)
    data = load_config_file(path)
    for key in ("run_dir", "prompts"):
        value = data.get(key)
        if isinstance(value, str) and value:
            p = Path(value).expanduser()
            data[key] = str(p if p.is_absolute() else path.resolve().parent / p)
    return data


def load_serve_options(path: str | Path | None = None,
                       overrides: dict[str, Any] | None = None) -> ServeOptions:
    """Config file (optional) + overrides → validated ``ServeOptions``."""
    from pydantic import ValidationError

    try:
        return ServeOptions.model_validate(deep_merge(read_serve_config(path), overrides or {}))
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}invalid serve options:\n" + "\n".join(lines)) from None
