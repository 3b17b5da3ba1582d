"""One run outside a study (``poolstride train``, or a notebook): its default directory and the run itself,
under ``torchrun`` (DDP) when the environment says so.

>>> from poolstride.train import RunSpec, get_recipe, train_single
>>> result, run_dir = train_single(RunSpec.of("tiny", "blur"), "textures", get_recipe("demo", epochs=1))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import PoolstrideError
from ..variants import slugify
from . import dist
from .data import check_fits, load_dataset
from .engine import Callback, RunSpec, resolve_device, train_run
from .recipe import Recipe


def default_run_dir(model: str, spec: RunSpec, dataset: str, recipe: Recipe) -> Path:
    """``runs/train-<model>-<variant>-seed<k>-<hash>``: the same definition (variant, seed, dataset, recipe) names
    the same directory, so repeating a command resumes its run."""
    v = spec.variant
    key = json.dumps([v.to_dict(), spec.seed, dataset, recipe.to_dict()], sort_keys=True)
    h = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Path("runs") / f"train-{slugify(model)}-{v.slug}-seed{spec.seed}-{h}"


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, deepest first."""
    out = []
    for p in (path, *path.parents):
        if p.exists():
            break
        out.append(p)
    return out


def _remove_empty(dirs: list[Path]) -> None:
    """Remove the directories a run created and left empty (deepest first); keep any with files."""
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()


@dataclass
class SingleRun:
    """One run, checked and placed (:func:`plan_single`): :meth:`train` trains it."""

    spec: RunSpec
    dataset: Any
    recipe: Recipe
    device: torch.device
    run_dir: Path
    dist_info: dist.DistInfo

    def train(self, callback: Callback | None = None) -> dict[str, Any]:
        """Train the run (every ``torchrun`` process its share) and return its result. A user error before
        training leaves no empty run directory behind."""
        info, dev, rec = self.dist_info, self.device, self.recipe
        created = _missing_dirs(self.run_dir)
        dist.init(info, dev)
        try:
            return train_run(self.spec, self.dataset, rec, dev, self.run_dir, callback=callback, dist_info=info)
        except PoolstrideError:
            _remove_empty(created)
            raise
        finally:
            dist.shutdown(info)


def plan_single(
    spec: RunSpec,
    dataset: Any,
    recipe: Recipe,
    device: str = "auto",
    out: str | Path | None = None,
    *,
    data_dir: str | None = None,
    download: bool = False,
    dist_info: dist.DistInfo | None = None,
    model: str | None = None,
) -> SingleRun:
    """Load the data, check that the recipe fits it, pick the device and the run directory (``out``, default
    :func:`default_run_dir`). ``dataset``: a name (``textures``, ``cifar10``, ``npz:PATH``...) or a dataset
    object; ``dist_info``: the ``torchrun`` setup (default: from the environment); ``model``: the model as the
    user named it, for the default directory's name (default: the variant's model)."""
    info = dist_info or dist.from_env()
    ds = load_dataset(dataset, data_dir, download=download)
    check_fits(ds, recipe.train_subset, recipe.batch_size)
    dev = resolve_device(device, info)
    ds_name = dataset if isinstance(dataset, str) else str(getattr(ds, "name", "dataset"))
    run_dir = Path(out) if out is not None else default_run_dir(model or spec.variant.model, spec, ds_name, recipe)
    return SingleRun(spec, ds, recipe, dev, run_dir, info)


def train_single(
    spec: RunSpec, dataset: Any, recipe: Recipe, device: str = "auto", out: str | Path | None = None,
    callback: Callback | None = None, **options: Any,
) -> tuple[dict[str, Any], Path]:  # fmt: skip
    """Train one run into ``out`` and return (result, run directory): :func:`plan_single` (``options``: its
    keyword arguments), then :meth:`SingleRun.train`."""
    run = plan_single(spec, dataset, recipe, device, out, **options)
    return run.train(callback), run.run_dir


__all__ = ["SingleRun", "default_run_dir", "plan_single", "train_single"]
