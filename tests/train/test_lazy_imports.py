"""The core package and the CLI must not import torch until training runs."""

from __future__ import annotations

import subprocess
import sys


def test_cli_and_config_do_not_import_torch():
    code = ("import sys, longreward.train, longreward.train.config, longreward.train.data, "
            "longreward.cli.train; from longreward.train import TrainConfig; "
            "TrainConfig(pairs='p', model='m', output_dir='o').require_complete(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_yaml_config_rejects_unknown_keys(tmp_path):
    import pytest

    from longreward.train.config import load_train_config

    f = tmp_path / "t.yaml"
    f.write_text("train:\n  beta: 0.2\n  lerning_rate: 1\n")
    with pytest.raises(ValueError, match="lerning_rate: unknown option"):
        load_train_config(f)
    f.write_text("train:\n  beta: 0.2\n")
    cfg = load_train_config(f, beta=None, ce_weight=0.5)
    assert (cfg.beta, cfg.ce_weight, cfg.learning_rate) == (0.2, 0.5, 1e-6)
