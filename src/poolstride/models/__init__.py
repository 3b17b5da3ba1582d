"""Built-in model families that expose their downsampling sites.

>>> from poolstride import models
>>> m = models.build("allcnn-c", downsample="blur(base=max,size=3)")
>>> [s.op for s in models.sites(m)]
['blur(size=3)', 'blur(size=3)']

Names: ``tiny``, ``allcnn-{a,b,c}[:VARIANT]`` (VARIANT = base, strided, convpool, all-cnn),
``resnet{20,32,44,56,110}`` (CIFAR), ``resnet18``/``resnet50`` (ImageNet layout). Keyword options
(``variant``, ``shortcut``, ``stem``, ``dropout``, ``num_classes``, ``in_channels``) go to the family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ModelError, PoolstrideError
from ..spec import OpSpec
from .allcnn import VARIANTS, AllCNN
from .demo import PADDINGS, TinyNet
from .resnet_cifar import CifarResNet
from .resnet_imagenet import STEMS, ImageNetResNet
from .shortcuts import SHORTCUTS
from .site import DownsampleSite, SiteInfo, apply_downsample, iter_sites, list_sites, make_site_op


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    summary: str
    builder: Callable[..., nn.Module]
    input_size: tuple[int, int, int]
    num_classes: int
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelEntry] = {}


def _add(entry: ModelEntry) -> None:
    _MODELS[entry.name] = entry


_add(
    ModelEntry(
        "tiny", "demo", "tiny demo CNN, 3 pool sites, trains in seconds on a CPU", TinyNet, (3, 32, 32), 10,
        {"padding": PADDINGS}, {"padding": "zeros"},
    )
)  # fmt: skip
for _f in "abc":
    _add(
        ModelEntry(
            f"allcnn-{_f}", "All-CNN", f"Springenberg et al. 2015, Model {_f.upper()} and its variants",
            lambda family=_f, **kw: AllCNN(family, **kw), (3, 32, 32), 10,
            {"variant": VARIANTS, "dropout": ("true", "false"), "bn": ("true", "false"),
             "final_relu": ("true", "false")}, {"variant": "base"},
        )
    )  # fmt: skip
for _d in (20, 32, 44, 56, 110):
    _add(
        ModelEntry(
            f"resnet{_d}", "CIFAR ResNet", f"He et al. 2016 CIFAR ResNet-{_d} (6n+2, 16/32/64 filters)",
            lambda depth=_d, **kw: CifarResNet(depth, **kw), (3, 32, 32), 10,
            {"shortcut": SHORTCUTS}, {"shortcut": "A"},
        )
    )  # fmt: skip
for _d in (18, 50):
    _add(
        ModelEntry(
            f"resnet{_d}", "ImageNet ResNet", f"He et al. 2016 ResNet-{_d}, torchvision layout",
            lambda depth=_d, **kw: ImageNetResNet(depth, **kw), (3, 224, 224), 1000,
            {"stem": STEMS, "shortcut": ("B", "D", "A", "fish", "fish-id")}, {"stem": "original", "shortcut": "B"},
        )
    )  # fmt: skip


def names() -> list[str]:
    return list(_MODELS)


def entries() -> list[ModelEntry]:
    return list(_MODELS.values())


def get_entry(name: str) -> ModelEntry:
    base = name.split(":", 1)[0].strip().lower()
    if base not in _MODELS:
        raise ModelError(f"unknown model {name!r}; valid models: {', '.join(_MODELS)}")
    return _MODELS[base]


def build(
    name: str,
    downsample: str | OpSpec | None = None,
    overrides: Mapping[str, str | OpSpec] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a built-in model.

    ``name`` may carry a variant after a colon (``"allcnn-c:all-cnn"``). ``downsample`` sets the operator
    at every ``pool``/``conv`` site (shortcuts follow ``shortcut=``, the stem follows ``stem=``);
    ``overrides`` maps site paths or globs to specs for per-site choices.
    """
    entry = get_entry(name)
    if ":" in name:
        variant = name.split(":", 1)[1].strip().lower()
        key = "variant" if "variant" in entry.options else "shortcut" if "shortcut" in entry.options else None
        if key is None:
            raise ModelError(f"model {entry.name!r} has no variants; drop ':{variant}'")
        kwargs.setdefault(key, variant if key == "variant" else variant.upper() if len(variant) == 1 else variant)
    for key, value in kwargs.items():
        valid = entry.options.get(key)
        if valid is not None and str(value).lower() not in [v.lower() for v in valid]:
            raise ModelError(f"{entry.name}: {key}={value!r} is not valid; expected one of {', '.join(valid)}")
        if valid == ("true", "false"):  # a boolean option may arrive as text from the command line
            kwargs[key] = str(value).lower() == "true"
    try:
        model = entry.builder(**kwargs)
    except TypeError as e:
        raise ModelError(f"{entry.name}: bad option: {e}") from None
    apply_downsample(model, downsample, overrides)
    return model


def sites(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> list[SiteInfo]:
    """The sites of a built-in model (see :func:`poolstride.models.site.list_sites`)."""
    return list_sites(model, input_size)


__all__ = [
    "DownsampleSite",
    "ModelEntry",
    "PoolstrideError",
    "SiteInfo",
    "apply_downsample",
    "build",
    "entries",
    "get_entry",
    "iter_sites",
    "list_sites",
    "make_site_op",
    "names",
    "sites",
]
