"""The training engine (``poolstride.train``).

>>> from poolstride import train
>>> ds = train.synthetic()                       # or poolstride.data.load("textures")
>>> r = train.train_run(train.RunSpec.of("tiny", "blur", seed=0), ds, train.get_recipe("fast", epochs=2))
>>> r["status"], r["acc"], r["shift_consistency"]

See :mod:`poolstride.train.engine` (runs, resume, determinism), :mod:`poolstride.train.recipe` (recipes),
:mod:`poolstride.train.data` (device-resident data and augmentation), :mod:`poolstride.train.evaluate`
(accuracy, shift-consistency) and :mod:`poolstride.train.dist` (DDP under torchrun).
"""

from __future__ import annotations

from .data import DeviceData, SimpleDataset, load_dataset, shift_images, synthetic
from .dist import DistInfo
from .engine import (
    RunError,
    RunSpec,
    auto_threads,
    lr_factor,
    read_result,
    resolve_device,
    set_threads,
    static_cost,
    train_run,
)
from .evaluate import evaluate, shift_consistency
from .recipe import RECIPES, Recipe, RecipeError, get_recipe, recipe_names
from .single import SingleRun, default_run_dir, plan_single, train_single

__all__ = [
    "RECIPES",
    "DeviceData",
    "DistInfo",
    "Recipe",
    "RecipeError",
    "RunError",
    "RunSpec",
    "SimpleDataset",
    "SingleRun",
    "auto_threads",
    "default_run_dir",
    "evaluate",
    "get_recipe",
    "load_dataset",
    "lr_factor",
    "plan_single",
    "read_result",
    "recipe_names",
    "resolve_device",
    "set_threads",
    "shift_consistency",
    "shift_images",
    "static_cost",
    "synthetic",
    "train_run",
    "train_single",
]
