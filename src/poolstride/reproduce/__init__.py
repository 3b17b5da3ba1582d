"""Reproductions of the published claims (``poolstride reproduce``).

Each protocol derives a claim again and prints the paper's number next to ours:

>>> from poolstride import reproduce
>>> r = reproduce.run("stem", latency=False)          # analytic: no data, no training
>>> r.data["resnet50_s1pool_stem_ratio"] >= 4
True
>>> [c.verdict for c in r.checks][:1]
['holds']

Training protocols (``allcnn``, ``resnet-shortcuts``, ``blurpool``, ``mishkin-pooling``) run a study through
:func:`poolstride.study.compare` and use :mod:`poolstride.results.stats` for every interval and test; the paper
numbers live in :mod:`poolstride.reproduce.papers`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..results import io as tio
from . import allcnn, blurpool, mishkin, resnet_shortcuts, stem
from .common import BUDGETS, Check, ReproduceError, Reproduction, Table

_MODULES: dict[str, ModuleType] = {m.__name__: m for m in (allcnn, blurpool, mishkin, resnet_shortcuts, stem)}


@dataclass(frozen=True)
class Protocol:
    name: str
    module: str
    title: str
    sources: str
    needs_data: bool
    options: tuple[str, ...]

    def load(self) -> ModuleType:
        """The protocol's module (it has ``run(budget, **kwargs)``)."""
        return _MODULES[self.module]


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "allcnn",
            "poolstride.reproduce.allcnn",
            "All-CNN Table 3: families A/B/C x base, strided, convpool, all-cnn on CIFAR-10",
            "Springenberg et al. 2015",
            True,
            ("families",),
        ),
        Protocol(
            "resnet-shortcuts",
            "poolstride.reproduce.resnet_shortcuts",
            "CIFAR ResNet-20/56 with shortcuts A, B, D, fish: accuracy and gradient flow",
            "He et al. 2016; He et al. 2019; Sun et al. 2018",
            True,
            ("depths", "shortcuts", "gradflow"),
        ),
        Protocol(
            "stem",
            "poolstride.reproduce.stem",
            "ResNet stem 7x7/2 vs 7x7/1 + pool vs deep vs s2d: MACs, latency, RF (analytic, no training)",
            "the question; He et al. 2016; Bag of Tricks; TResNet",
            False,
            ("models", "latency", "repeats"),
        ),
        Protocol(
            "blurpool",
            "poolstride.reproduce.blurpool",
            "max vs max + blur (sizes 2-5): accuracy and shift-consistency on CIFAR-10",
            "Zhang 2019",
            True,
            ("model", "sizes"),
        ),
        Protocol(
            "mishkin-pooling",
            "poolstride.reproduce.mishkin",
            "max / avg / strided / max+avg / stochastic pooling at CIFAR scale (optional)",
            "Mishkin et al. 2017",
            True,
            ("model",),
        ),
    )
}


def names() -> list[str]:
    return list(PROTOCOLS)


def get(name: str) -> Protocol:
    key = str(name).strip().lower()
    if key not in PROTOCOLS:
        raise ReproduceError(f"unknown reproduction {name!r}; valid: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[key]


def run(name: str, budget: str = "quick", **kwargs: Any) -> Reproduction:
    """Run the protocol ``name`` at ``budget`` (``quick`` or ``paper``); see each module for its options.

    Common keyword arguments: ``seeds``, ``dataset`` (default ``cifar10``), ``data_dir``, ``out`` (study
    directory), ``device``, ``threads``, ``report`` (write the study's HTML report), ``callback``, and recipe
    overrides ``epochs``, ``train_subset``, ``test_subset``, ``batch_size``, ``lr``.
    """
    rep: Reproduction = get(name).load().run(budget, **kwargs)
    if rep.study_dir:
        _save(rep)
    return rep


def _save(rep: Reproduction) -> None:
    """Keep the result next to the study: STUDY_DIR/reproduction.{json,md} (atomic writes). A failed write is a
    warning: the study itself is saved, and the result is returned (and printed) anyway."""
    d = Path(str(rep.study_dir))
    try:
        tio.write_text(d / "reproduction.json", json.dumps(rep.to_dict(), indent=2, default=str) + "\n")
        tio.write_text(d / "reproduction.md", rep.markdown())
    except OSError as e:
        warnings.warn(f"reproduction result not saved in {d}: {e}", stacklevel=3)


__all__ = [
    "BUDGETS",
    "PROTOCOLS",
    "Check",
    "Protocol",
    "ReproduceError",
    "Reproduction",
    "Table",
    "get",
    "names",
    "run",
]
