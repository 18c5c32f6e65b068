"""LongReward as the reward of online RL.

- ``longreward serve`` / :func:`create_app`: an HTTP service with a native ``/score`` route,
  OpenRLHF's ``/get_reward``, a slime-style per-sample ``/slime``, document registration,
  auth, limits, ``/health`` and Prometheus ``/metrics`` (``pip install 'longreward[serve]'``).
- :mod:`longreward.serve.verl` and :mod:`longreward.serve.trl`: in-process reward functions
  for verl and TRL's ``GRPOTrainer``.
- :class:`RewardService`: what all of them share, usable directly.

Importing this package does not import FastAPI or uvicorn; they are loaded when an app is
built or served.
"""

from ._app import create_app
from ._backends import LocalRewards, RemoteRewards, rewards_for
from ._options import ServeOptions, load_serve_options
from ._server import ServerThread, serve_forever
from ._service import ItemResult, RewardService, ScoreItem, ScoreOutcome

__all__ = [
    "ItemResult", "LocalRewards", "RemoteRewards", "RewardService", "ScoreItem", "ScoreOutcome",
    "ServeOptions", "ServerThread", "create_app", "load_serve_options", "rewards_for",
    "serve_forever",
]
