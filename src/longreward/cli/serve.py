"""``longreward serve``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app
from ._common import dry_run_banner, err, flag_overrides, report_errors, with_flags_of
from .score import JUDGE_FLAGS, score_command, score_overrides

#: score's flags that serve takes too, under ``score:`` of serve.yaml (``--config`` is serve's
#: own file, and the data's field names are the protocols' business)
SERVE_SCORE_FLAGS = (*(f for f in JUDGE_FLAGS if f != "config"), "dimensions", "weight",
                     "tokenizer", "retrieval", "retrieval_model", "top_k", "chunk_tokens",
                     "completeness_chunk_tokens", "grade_batch_size", "max_document_tokens",
                     "verdicts")


@app.command("serve")
@with_flags_of(score_command, SERVE_SCORE_FLAGS)
def serve_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="serve.yaml: `score:` (the judge options of `longreward score`), host, port, run_dir, prompts, limits, fallback_reward. Flags win.", exists=True, dir_okay=False)] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Prompts file (id, context, query) to register at start; trainers then name a prompt by its id.", exists=True, dir_okay=False)] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000; 0 picks a free one).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run store for the judge-call cache and registered documents (default: serve.run/).")] = None,
    token_env: Annotated[str | None, typer.Option(help="Env var holding the bearer token clients must send (default: LONGREWARD_SERVE_TOKEN, when set).")] = None,
    fallback_reward: Annotated[float | None, typer.Option(help="A fixed reward for items that could not be scored (mask 0, logged); default: null on /score, the neutral reward (the prompt's mean) on /get_reward and /slime.")] = None,
    max_concurrent_requests: Annotated[int | None, typer.Option(help="Requests handled at once; more get 503 + Retry-After.")] = None,
    request_timeout: Annotated[float | None, typer.Option(help="Per-request deadline, seconds.")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Larger request bodies get 413 (default 32 MiB).")] = None,
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning.")] = "info",
    borrowed: dict[str, Any] | None = None,
) -> None:
    """Serve LongReward as the reward of online RL: native /score, OpenRLHF /get_reward, slime /slime, document registration, /health and /metrics. Takes score's judge and scoring flags. Needs the serve extra: pip install 'longreward\\[serve]'."""
    from ..config import deep_merge
    from ..serve import RewardService, create_app, load_serve_options, serve_forever

    overrides = deep_merge(flag_overrides(**{
        "prompts": str(prompts) if prompts else None, "host": host, "port": port,
        "run_dir": str(run_dir) if run_dir else None,
        "auth_token_env": token_env, "fallback_reward": fallback_reward,
        "max_concurrent_requests": max_concurrent_requests, "request_timeout": request_timeout,
        "max_body_bytes": max_body_bytes,
    }), {"score": score_overrides(borrowed or {})})
    options = load_serve_options(config, overrides)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    root = logging.getLogger("longreward")
    root.addHandler(handler)
    root.setLevel(log_level.upper())

    dry_run_banner(options.score.judge.provider)
    service = RewardService(options)
    asgi = create_app(service)  # reads the token now: a missing variable stops here
    service.open()  # lock, store, prompts: errors stop here, before the port is taken
    report_errors(service.prompt_file_errors, None)
    auth = (f"bearer token from ${options.auth_token_env}" if options.auth_token()
            else "[yellow]off[/] (set LONGREWARD_SERVE_TOKEN to require a token)")
    if not options.auth_token() and options.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {options.host} without auth")

    def ready(url: str) -> None:
        err.print(f"longreward serve on [bold]{url}[/]: POST /score, /get_reward (OpenRLHF), "
                  "/slime, /documents; GET /health, /metrics")
        failed = (f"fallback reward {options.fallback_reward:g}"
                  if options.fallback_reward is not None else
                  "null on /score, the neutral reward on /get_reward and /slime")
        d = options.deadlines
        err.print(f"  {service.n_prompts} prompt(s) registered over {service.n_documents} "
                  f"document(s); run store: {options.run_dir or 'none (memory only)'}; "
                  f"auth: {auth}")
        err.print(f"  a sample that cannot be scored gets: {failed}; deadlines: /score "
                  f"{options.request_timeout:g}s, /get_reward {d.openrlhf:g}s, /slime "
                  f"{d.slime:g}s")

    serve_forever(asgi, options.host, options.port, on_ready=ready, log_level=log_level.lower())
