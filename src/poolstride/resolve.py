"""Turn a MODEL string from the command line into a module and its natural input size.

* a built-in name, optionally with a variant: ``resnet50``, ``allcnn-c:all-cnn``, ``resnet20:B``;
* ``torchvision:NAME`` - ``torchvision.models.get_model(NAME, weights=None)`` (input 3x224x224; 3x299x299
  for inception_v3);
* ``timm:NAME`` - ``timm.create_model(NAME, pretrained=False)`` (input from the model's default config);
* ``package.module:callable`` - imported and called without arguments (an ``nn.Module`` instance is used
  as is); input 3x224x224 unless the object has an ``input_size`` attribute.

Unknown names and missing packages raise :class:`~poolstride.errors.ModelError` with a message that says
what is valid or what to install.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from . import models
from .errors import ModelError, PoolstrideError
from .extras import first_line, import_optional


@dataclass
class Resolved:
    model: nn.Module
    input_size: tuple[int, int, int]
    name: str
    source: str  # builtin | torchvision | timm | callable
    builtin: bool


def _builtin_names() -> list[str]:
    return models.names()


def resolve(text: str, options: Mapping[str, Any] | None = None, downsample: str | None = None) -> Resolved:
    """Build the model named by ``text`` (see the module docstring). ``options`` are keyword arguments for
    a built-in family (``stem=s1pool``...) or for the torchvision/timm/callable constructor;
    ``downsample`` sets every site of a built-in model."""
    opts = dict(options or {})
    if "downsample" in opts:  # `-o downsample=SPEC` is the same as `downsample=SPEC`
        if downsample is not None:
            raise ModelError("downsample given twice (as an option and as --downsample)")
        downsample = str(opts.pop("downsample"))
    t = text.strip()
    if not t:
        raise ModelError("empty model name")
    head, sep, tail = t.partition(":")
    builtin = _builtin_names()
    if head.lower() in builtin:
        m = models.build(t, downsample=downsample, **opts)
        return Resolved(m, models.get_entry(t).input_size, t, "builtin", True)
    if downsample is not None:
        raise ModelError(f"{t}: --downsample applies to built-in models; use a surgery policy for others")
    if head == "torchvision" and sep:
        return _resolve_torchvision(t, tail, opts)
    if head == "timm" and sep:
        return _resolve_timm(t, tail, opts)
    cwd_importable()
    if sep and tail and ("." in head or _importable(head)):
        return _resolve_callable(t, head, tail, opts)
    raise ModelError(
        f"unknown model {t!r}; valid: built-in names ({', '.join(builtin)}), torchvision:NAME, timm:NAME, "
        "or package.module:callable"
    )


def _resolve_torchvision(t: str, tail: str, opts: dict[str, Any]) -> Resolved:
    """``torchvision:NAME``: ``get_model(NAME, weights=None)``; named weights only from the local cache."""
    tvm = _torchvision_models(t, tail)
    weights = opts.pop("weights", None)
    if weights not in (None, "", "none", "None"):
        _torchvision_weights_cached(tvm, tail, str(weights))
    else:
        weights = None
    try:
        m = tvm.get_model(tail, weights=weights, **opts)
    except TypeError as e:
        raise ModelError(f"{t}: bad option: {e}") from None
    except ValueError as e:
        raise ModelError(f"{t}: {str(e).splitlines()[0][:200]}") from None
    size = (3, 299, 299) if tail.startswith("inception") else (3, 224, 224)
    return Resolved(m, size, t, "torchvision", False)


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` for the duration (the previous value restored): nothing is downloaded."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _resolve_timm(t: str, tail: str, opts: dict[str, Any]) -> Resolved:
    """``timm:NAME``: ``create_model(NAME)``; pretrained weights only from the local Hugging Face cache."""
    timm = _timm(t, tail)
    pretrained = bool(opts.pop("pretrained", False))
    try:
        if pretrained:  # from the local Hugging Face cache only: nothing is downloaded
            with _hf_offline():
                m = timm.create_model(tail, pretrained=True, **opts)
        else:
            m = timm.create_model(tail, pretrained=False, **opts)
    except TypeError as e:
        raise ModelError(f"{t}: bad option: {e}") from None
    except Exception as e:  # noqa: BLE001 - hub errors come in many classes
        first = first_line(e, 160)
        if pretrained:
            raise ModelError(
                f"{t}: pretrained weights are not in the local cache ({first}); nothing is downloaded: "
                "pass --weights FILE (a state_dict) instead"
            ) from None
        raise ModelError(f"{t}: cannot build: {first}") from None
    cfg = getattr(m, "pretrained_cfg", None) or getattr(m, "default_cfg", None) or {}
    size = tuple(cfg.get("input_size", (3, 224, 224)))
    return Resolved(m, (int(size[0]), int(size[1]), int(size[2])), t, "timm", False)


def _resolve_callable(t: str, head: str, tail: str, opts: dict[str, Any]) -> Resolved:
    """``package.module:callable``: an ``nn.Module`` attribute as is, anything else called with ``opts``."""
    try:
        mod = importlib.import_module(head)
    except Exception as e:  # noqa: BLE001 - user code: a SyntaxError or any error at import
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"{t}: cannot import module {head!r}: {type(e).__name__}: {first}") from None
    obj: Any = mod
    for part in tail.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{t}: module {head!r} has no attribute {tail!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise ModelError(f"{t}: {tail!r} is neither an nn.Module nor callable")
        obj = call_factory(obj, opts, t, f"{tail}()")
    size = tuple(getattr(obj, "input_size", (3, 224, 224)))
    return Resolved(obj, (int(size[0]), int(size[1]), int(size[2])), t, "callable", False)


def _torchvision_models(t: str, tail: str) -> ModuleType:
    """``torchvision.models``, once ``tail`` is checked to name one of its models."""
    tvm = import_optional("torchvision.models", t, ModelError)
    if tail not in tvm.list_models():
        raise ModelError(_unknown("torchvision", tail, tvm.list_models()))
    return tvm


def _timm(t: str, tail: str) -> ModuleType:
    """``timm``, once ``tail`` is checked to name one of its models."""
    timm = import_optional("timm", t, ModelError)
    if not timm.is_model(tail):
        raise ModelError(_unknown("timm", tail, timm.list_models()))
    return timm


def _unknown(source: str, name: str, valid: list[str]) -> str:
    """'unknown torchvision model 'resnt18'; did you mean resnet18, ...?' with the closest valid names."""
    close = difflib.get_close_matches(name, valid, n=6, cutoff=0.6)
    if not close and name[:4]:
        close = [n for n in valid if n.startswith(name[:4])][:6]
    lister = "torchvision.models.list_models()" if source == "torchvision" else f"{source}.list_models()"
    hint = f"did you mean {', '.join(close)}?" if close else f"{lister} lists the {len(valid)} valid names"
    return f"unknown {source} model {name!r}; {hint}"


def call_factory(fn: Any, kwargs: Mapping[str, Any], label: str, name: str) -> nn.Module:
    """``fn(**kwargs)`` for a user's model factory: its exceptions and a non-module result become one
    :class:`ModelError` line (``"{label}: calling {name} failed: ..."``)."""
    try:
        obj = fn(**kwargs)
    except PoolstrideError:
        raise
    except Exception as e:  # noqa: BLE001 - user code
        raise ModelError(f"{label}: calling {name} failed: {type(e).__name__}: {e}") from None
    if not isinstance(obj, nn.Module):
        raise ModelError(f"{label}: {name} returned {type(obj).__name__}, not an nn.Module")
    return obj


def _torchvision_weights_cached(tvm: Any, name: str, weights: str) -> None:
    """Named torchvision weights are used only when already in torch.hub's cache: nothing is downloaded."""
    try:
        enum = tvm.get_model_weights(name)
        w = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights.split(".")[-1]]
    except (KeyError, ValueError, AttributeError):
        raise ModelError(f"torchvision:{name} has no weights {weights!r}") from None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
    if not os.path.isfile(path):
        raise ModelError(
            f"torchvision:{name} weights {weights} are not in the local cache ({path}); nothing is downloaded: "
            "copy the file there, or pass --weights FILE (a state_dict)"
        )


def cwd_importable() -> None:
    """Make the current directory importable, as ``python -m`` does (the console script does not)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def add_study_import_path(study: Mapping[str, Any]) -> None:
    """Make a model file of the directory a study was made in importable (``mynet:build`` rebuilt from a study
    in another process or directory); appended last, so the current directory still wins."""
    cwd = (study.get("provenance") or {}).get("cwd")
    if cwd and os.path.isdir(cwd) and cwd not in sys.path:
        sys.path.append(cwd)


def check_model_string(text: str) -> None:
    """Raise :class:`ModelError` (one line, what is valid) for a MODEL string that cannot name a model; cheap:
    nothing is built."""
    t = text.strip()
    head, sep, tail = t.partition(":")
    if head.lower() in _builtin_names():
        models.get_entry(t)
        return
    if head == "torchvision" and sep:
        _torchvision_models(t, tail)
        return
    if head == "timm" and sep:
        _timm(t, tail)
        return
    cwd_importable()
    if sep and tail and ("." in head or _importable(head)):
        return
    raise ModelError(
        f"unknown model {t!r}; valid: built-in names ({', '.join(_builtin_names())}), torchvision:NAME, timm:NAME, "
        "or package.module:callable (a module in the current directory works too)"
    )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["stem=s1pool", "num_classes=10"]`` -> ``{"stem": "s1pool", "num_classes": 10}``."""
    out: dict[str, Any] = {}
    for it in items or []:
        k, eq, v = it.partition("=")
        if not eq or not k.strip():
            raise ModelError(f"bad option {it!r}; expected key=value")
        val: Any = v.strip()
        for conv in (int, float):
            try:
                val = conv(val)
                break
            except ValueError:
                pass
        if val in ("true", "false"):
            val = val == "true"
        out[k.strip()] = val
    return out


__all__ = ["Resolved", "parse_options", "resolve"]
