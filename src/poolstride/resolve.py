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

import difflib
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .errors import ModelError, PoolstrideError


@dataclass
class Resolved:
    model: nn.Module
    input_size: tuple[int, int, int]
    name: str
    source: str  # builtin | torchvision | timm | callable
    builtin: bool


def _builtin_names() -> list[str]:
    from . import models

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
        from . import models

        m = models.build(t, downsample=downsample, **opts)
        return Resolved(m, models.get_entry(t).input_size, t, "builtin", True)
    if downsample is not None:
        raise ModelError(f"{t}: --downsample applies to built-in models; use a surgery policy for others")
    if head == "torchvision" and sep:
        tvm = import_optional("torchvision.models", t)
        if tail not in tvm.list_models():
            raise ModelError(_unknown("torchvision", tail, tvm.list_models()))
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
    if head == "timm" and sep:
        timm = import_optional("timm", t)
        pretrained = bool(opts.pop("pretrained", False))
        if not timm.is_model(tail):
            raise ModelError(_unknown("timm", tail, timm.list_models()))
        try:
            if pretrained:  # from the local Hugging Face cache only: nothing is downloaded
                import os

                old = os.environ.get("HF_HUB_OFFLINE")
                os.environ["HF_HUB_OFFLINE"] = "1"
                try:
                    m = timm.create_model(tail, pretrained=True, **opts)
                finally:
                    if old is None:
                        os.environ.pop("HF_HUB_OFFLINE", None)
                    else:
                        os.environ["HF_HUB_OFFLINE"] = old
            else:
                m = timm.create_model(tail, pretrained=False, **opts)
        except TypeError as e:
            raise ModelError(f"{t}: bad option: {e}") from None
        except Exception as e:  # noqa: BLE001 - hub errors come in many classes
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            if pretrained:
                raise ModelError(
                    f"{t}: pretrained weights are not in the local cache ({first}); nothing is downloaded: "
                    "pass --weights FILE (a state_dict) instead"
                ) from None
            raise ModelError(f"{t}: cannot build: {first}") from None
        cfg = getattr(m, "pretrained_cfg", None) or getattr(m, "default_cfg", None) or {}
        size = tuple(cfg.get("input_size", (3, 224, 224)))
        return Resolved(m, (int(size[0]), int(size[1]), int(size[2])), t, "timm", False)
    _cwd_importable()
    if sep and tail and ("." in head or _importable(head)):
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
    raise ModelError(
        f"unknown model {t!r}; valid: built-in names ({', '.join(builtin)}), torchvision:NAME, timm:NAME, "
        "or package.module:callable"
    )


# What installs each optional model source (the pyproject extras).
_INSTALL = {
    "torchvision": "pip install torchvision (the build that matches your torch), or pip install 'poolstride[vision]'",
    "timm": "pip install timm, or pip install 'poolstride[timm]'",
}


def import_optional(module: str, what: str) -> Any:
    """Import ``module`` of an optional package (torchvision, timm); a missing or broken install is a
    :class:`ModelError` that names the package and says how to install or repair it."""
    package = module.split(".")[0]
    fix = _INSTALL.get(package, f"pip install {package}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == package:
            raise ModelError(f"{what}: {package} is not installed; install it: {fix}") from None
        reason = f"{type(e).__name__}: {_first(e)}"
    except (ImportError, RuntimeError, AttributeError, OSError) as e:
        # a torchvision built for another torch fails at import with "RuntimeError: operator torchvision::nms
        # does not exist"; a half-removed package with ImportError or AttributeError
        reason = f"{type(e).__name__}: {_first(e)}"
    import torch

    raise ModelError(
        f"{what}: {package} is installed but broken ({reason}); reinstall it for torch {torch.__version__}: "
        f"{fix.replace('pip install', 'pip install --force-reinstall', 1)}"
    ) from None


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


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
    import os

    import torch

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


def _cwd_importable() -> None:
    """Make the current directory importable, as ``python -m`` does (the console script does not)."""
    import os
    import sys

    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def check_model_string(text: str) -> None:
    """Raise :class:`ModelError` (one line, what is valid) for a MODEL string that cannot name a model; cheap:
    nothing is built."""
    t = text.strip()
    head, sep, tail = t.partition(":")
    if head.lower() in _builtin_names():
        from . import models

        models.get_entry(t)
        return
    if head == "torchvision" and sep:
        tvm = import_optional("torchvision.models", t)
        if tail not in tvm.list_models():
            raise ModelError(_unknown("torchvision", tail, tvm.list_models()))
        return
    if head == "timm" and sep:
        timm = import_optional("timm", t)
        if not timm.is_model(tail):
            raise ModelError(_unknown("timm", tail, timm.list_models()))
        return
    _cwd_importable()
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
