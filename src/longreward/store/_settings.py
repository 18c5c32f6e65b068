"""Stage settings kept in the run store, so a resumed stage never mixes results made with
other settings (``sample``, ``score`` and ``run`` all check them)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import StaleRunError  # defined with the other errors; importable from here too
from ._store import scrub_secrets

#: policy/judge options that change where and how fast requests go, never what comes back
TRANSPORT_KEYS = ("base_urls", "api_key_env", "timeout", "max_concurrency", "rpm", "tpm",
                   "max_retries", "extra_headers", "prices")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_stage_settings(store: Any, stage: str, settings: dict[str, Any], *,
                         where: str = "") -> None:
    """Refuse to resume ``stage`` from results made with other settings.

    A resumed stage skips every item the store marks finished; if ``n``, the policy, the
    prompt layout, the judge or the dimensions changed in between, those items would be
    silently reused next to new ones. The settings of the first run are kept in the store
    and compared on every later run; a store with no finished item simply takes the new ones.
    """
    key = f"settings:{stage}"
    # tuples -> lists and credentials masked, as the store keeps them (a key is no setting)
    settings = scrub_secrets(json.loads(json.dumps(settings)))
    old = store.get_meta(key)
    if old is not None and old != settings and store.count(stage) > 0:
        a, b = _flatten(old), _flatten(settings)
        changed = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                   if a.get(k) != b.get(k)]
        place = where or str(getattr(store, "path", "the run store"))
        raise StaleRunError(
            f"{place} already holds {store.count(stage)} '{stage}' results made with other "
            f"settings ({'; '.join(changed)}). Resuming would mix them with new ones. Fix: "
            "put the run in a new run directory (and output file), or delete the old run "
            "directory and outputs to start over, or restore the old settings."
        )
    if old != settings:
        store.set_meta(key, settings)
