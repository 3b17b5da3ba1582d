"""What every training protocol shares: its call sorted into budget, options, recipe and study arguments
(:class:`Request`), the study run through :func:`poolstride.study.compare` (:meth:`Request.train`), and the
finished study read back into a :class:`~poolstride.reproduce.common.Reproduction` (:class:`Training`,
:class:`Found`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import DataError
from ..study import compare
from ..train import get_recipe, load_dataset, resolve_device
from .common import (
    Callback,
    Check,
    ReproduceError,
    Reproduction,
    Seeds,
    Table,
    Timer,
    chance_floor,
    check_budget,
    dataset_label,
    hardware,
    paper_estimate,
    per_seed,
    pop_options,
    recipe_text,
    run_notes,
    variant_mean,
)

EXPECTED_LAYOUT = (
    "DIR/cifar-10-batches-py/ (the torchvision pickles) or DIR/train_*.npz + DIR/test.npz (arrays x, y; "
    "e.g. shared/data/cifar10)"
)


def load_data(dataset: Any, data_dir: str | None, protocol: str) -> Any:
    """Load the dataset once. Missing CIFAR-10 becomes one DataError line naming --data-dir and the layout."""
    if not isinstance(dataset, str):
        return load_dataset(dataset)
    try:
        return load_dataset(dataset, data_dir)
    except DataError as e:
        if dataset.lower().replace("-", "") in ("cifar10", "cifar"):
            where = data_dir or "the default data directory"
            raise DataError(
                f"{protocol} needs CIFAR-10, not found in {where}: pass --data-dir DIR with {EXPECTED_LAYOUT} "
                f"(or --dataset textures for a smoke run); loader: {str(e).split(';')[0]}"
            ) from None
        raise


# ---- the request, the study, the result ---------------------------------------------------------------------------

RECIPE_OVERRIDES = ("epochs", "train_subset", "test_subset", "batch_size", "lr", "shift_images")
COMMON = ("seeds", "dataset", "data_dir", "out", "device", "threads", "report", "callback")


@dataclass
class StudyArgs:
    """Where and how a protocol's study runs: the common keyword arguments of :func:`poolstride.reproduce.run`."""

    dataset: Any = "cifar10"
    data_dir: str | None = None
    out: str | Path | None = None
    device: str = "auto"
    threads: int | None = None
    report: bool = False
    callback: Callback | None = None


@dataclass
class Training:
    """A training protocol's study after it ran: the summary, the dataset, the recipe, hardware and time."""

    summary: dict[str, Any]
    dataset: Any
    recipe: Any
    seeds: int
    hardware: dict[str, Any]
    wall_s: float
    study_dir: str

    @property
    def floor(self) -> float:
        """Chance accuracy of the dataset plus one point (:func:`chance_floor`)."""
        return chance_floor(self.dataset)

    def per_seed(self, metric: str = "acc") -> dict[str, Seeds]:
        return per_seed(self.summary, metric)

    def means(self, key: str) -> dict[str, float | None]:
        return variant_mean(self.summary, key)

    def speed(self, variant: str) -> float | None:
        """The variant's training images/s (one decimal), the last column of every accuracy table."""
        ips = self.means("images_per_s_mean").get(variant)
        return None if not ips else round(float(ips), 1)

    def estimate(self, epochs: float, n_train: int, basis: str) -> dict[str, Any]:
        """:func:`paper_estimate` from this run's throughput, at the paper's 3 seeds (or more if run here)."""
        return paper_estimate(self.means("images_per_s_mean"), epochs, n_train, max(3, self.seeds), basis)

    def budget(self, name: str, what: str, **extra: Any) -> dict[str, Any]:
        """The ``budget`` record of the result: name, description (``what``, seeds, recipe), ``extra``, recipe."""
        text = recipe_text(self.recipe, self.dataset)
        return {
            "name": name,
            "description": f"{name}: {what}, {self.seeds} seeds; " + text,
            **extra,
            "seeds": self.seeds,
            "recipe": self.recipe.to_dict(),
            "dataset": dataset_label(self.dataset),
        }

    def notes(self, *before: str) -> list[str]:
        """The recipe in words, ``before``, then the failed runs and the runs that stayed at chance."""
        return [recipe_text(self.recipe, self.dataset), *before, *run_notes(self.summary, self.floor)]

    def result(self, name: str, title: str, budget: dict[str, Any], found: Found) -> Reproduction:
        """The :class:`Reproduction` of this study: ``found`` (tables, checks, notes, estimate) with its budget."""
        timing = {"wall_s": round(self.wall_s, 1), "paper_estimate": found.estimate, **found.timing}
        return Reproduction(
            name, title, budget, self.hardware, found.tables, found.checks, timing, found.notes, self.study_dir,
            found.data,
        )  # fmt: skip


@dataclass
class Found:
    """What a protocol read from its study: tables, claim checks, notes, the paper-budget estimate and data."""

    tables: list[Table]
    checks: list[Check]
    notes: list[str]
    estimate: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)  # extra timing fields


def default_out(protocol: str, budget: str, defn: dict[str, Any]) -> Path:
    h = hashlib.sha1(json.dumps(defn, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path("runs") / "reproduce" / f"{protocol}-{budget}-{h}"


def budget_recipe(base: str | Any, budget_defaults: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """The protocol's recipe: ``base`` with the budget's fields, then the user's overrides (None = keep)."""
    fields = dict(budget_defaults)
    user = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in user and fields.get("milestones") and fields.get("epochs"):
        scale = user["epochs"] / fields["epochs"]  # keep the step schedule's shape when shortened
        fields["milestones"] = tuple(max(1, round(m * scale)) for m in fields["milestones"])
    fields.update(user)
    name = fields.pop("name", None)  # the recipe's own name (he2016-cifar), not get_recipe's base argument
    rec = get_recipe(base, **fields)
    return dataclasses.replace(rec, name=name) if name else rec


@dataclass
class Request:
    """A training protocol's call, sorted: the budget and its settings (``spec``), the protocol's options, the
    recipe overrides, the seeds and the study arguments."""

    protocol: str
    budget: str
    spec: dict[str, Any]
    options: dict[str, Any]
    overrides: dict[str, Any]
    seeds: int
    study: StudyArgs

    @classmethod
    def parse(
        cls, protocol: str, budget: str, budgets: dict[str, dict[str, Any]], allowed: dict[str, Any], kwargs: Any
    ) -> Request:
        """Check the budget, split ``kwargs`` (an option this protocol does not take is an error)."""
        budget = check_budget(budget)
        spec = budgets[budget]
        common = {k: kwargs.pop(k) for k in COMMON if k in kwargs}
        overrides = {k: kwargs.pop(k) for k in RECIPE_OVERRIDES if k in kwargs}
        options = pop_options(protocol, kwargs, allowed)
        seeds = int(common.pop("seeds", None) or spec["seeds"])
        return cls(protocol, budget, spec, options, overrides, seeds, StudyArgs(**common))

    def recipe(self, fields: dict[str, Any] | None = None) -> Any:
        """The budget's recipe (or ``fields`` in place of its fields) with the user's overrides."""
        return budget_recipe(self.spec["base"], self.spec["recipe"] if fields is None else fields, self.overrides)

    def train(
        self, model: str, variants: Sequence[str], recipe: Any, model_options: dict[str, Any] | None = None
    ) -> Training:
        """Load the data (one clear error when CIFAR-10 is missing), run the study through the study engine
        (resuming when ``out`` already holds the same study), time it."""
        a = self.study
        if a.threads is not None:
            torch.set_num_threads(max(1, int(a.threads)))
        if self.seeds < 1:
            raise ReproduceError(f"--seeds {self.seeds}: need at least 1 (3 or more for confidence intervals)")
        ds = load_data(a.dataset if a.dataset is not None else "cifar10", a.data_dir, self.protocol)
        dev = str(resolve_device(a.device))
        hw = hardware(dev)
        defn = {"variants": list(variants), "recipe": recipe.to_dict(), "seeds": self.seeds, "data": dataset_label(ds)}
        out = Path(a.out) if a.out is not None else default_out(self.protocol, self.budget, defn)
        timer = Timer()
        summary = compare(
            model, list(variants), self.seeds, dataset=ds, recipe=recipe, device=dev, out=out, callback=a.callback,
            report=a.report, threads=a.threads, model_options=model_options,
        )  # fmt: skip
        return Training(summary, ds, recipe, self.seeds, hw, timer.seconds, str(summary.get("study_dir", out)))


__all__ = ["COMMON", "RECIPE_OVERRIDES", "Found", "Request", "StudyArgs", "Training", "budget_recipe", "load_data"]
