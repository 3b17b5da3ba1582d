"""Training recipes: every knob of a run in one frozen, JSON-serialisable record.

Built-in recipes (``poolstride compare --recipe NAME``):

``fast``
    Nesterov SGD (momentum 0.9), one-cycle schedule, label smoothing 0.1, weight decay 5e-4, batch 128,
    random-crop (pad 4) + horizontal-flip augmentation on the device. For quick comparisons.
``paper``
    All-CNN training setup of Springenberg et al. 2015 (papers.md section 1.3): SGD momentum 0.9,
    lr 0.05 (the paper picks from {0.25, 0.1, 0.05, 0.01} per model and does not say which won), step
    schedule x0.1 after epochs 200, 250 and 300, 350 epochs, weight decay 0.001, no augmentation, no label
    smoothing. The batch size (128) is not in the paper. Dropout (20 % input, 50 % after each downsampling
    site) is part of the All-CNN model, not of the recipe. Preprocessing is per-channel mean/std
    normalisation, not the paper's GCN + ZCA whitening (a stated deviation).
``demo``
    ``fast`` shortened for the default study (``poolstride compare`` with no arguments): 4 epochs on a fixed
    2500-image training subset, batch 64 and lr 0.05 (more steps: +5 accuracy points over batch 128 at about
    the same time), shift-consistency on 500 test images.
``adamw``
    AdamW (lr 2e-3, weight decay 0.05), cosine schedule with 1 warm-up epoch, flips + crops.

Any field can be overridden: ``get_recipe("paper", epochs=10, lr=0.1)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import PoolstrideError

OPTIMIZERS = ("sgd", "nesterov", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
AMP_MODES = ("auto", "bf16", "fp16", "off")


class RecipeError(PoolstrideError, ValueError):
    """Unknown recipe name or a bad recipe value."""


@dataclass(frozen=True)
class Recipe:
    name: str = "fast"
    epochs: int = 8
    batch_size: int = 128
    optimizer: str = "nesterov"  # sgd | nesterov | adamw
    lr: float = 0.1  # peak learning rate for a batch of `batch_size`
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # constant | step | cosine | onecycle
    milestones: tuple[int, ...] = ()  # step schedule: epochs after which lr *= gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # cosine: linear warm-up; onecycle: ignored (pct_start)
    pct_start: float = 0.25  # onecycle: fraction of steps spent rising
    label_smoothing: float = 0.1
    augment: bool = True  # random crop with padding + horizontal flip, batched on the device
    crop_padding: int = 4
    flip: bool = True
    eval_every: int = 1  # evaluate the test set every N epochs (and always after the last)
    channels_last: bool = True
    # auto = bf16 autocast where the hardware does bf16 natively: CUDA, and CPUs with AVX512-BF16 / AMX (1.2-2.2x
    # faster training per operator there, benchmarks/bench_train.py); fp32 on other CPUs. bf16 = always;
    # off = fp32 everywhere (bit-for-bit comparable across CPUs of one kind either way; precision is recorded)
    amp: str = "auto"
    compile: bool = False  # torch.compile the model
    train_subset: int | None = None  # use the first N training images (a fixed, seeded subset)
    test_subset: int | None = None
    eval_batch_size: int = 512
    # shift-consistency (Zhang 2019): pairs of random shifts of up to max_shift pixels per axis
    shift_max: int = 4
    shift_padding: str = "reflect"  # how the shifted-in border is filled: reflect | zeros | replicate
    shift_pairs: int = 2  # passes over the (sub)set, each with two independent shifts per image
    shift_images: int | None = 2000  # images used for shift-consistency (None = whole test set)
    divergence_loss: float = 1e3  # a train loss above this (or NaN/inf) fails the run
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise RecipeError(f"recipe {self.name!r}: {msg}")

        if self.optimizer not in OPTIMIZERS:
            bad(f"optimizer={self.optimizer!r} is not valid; expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad(f"schedule={self.schedule!r} is not valid; expected one of {', '.join(SCHEDULES)}")
        if self.amp not in AMP_MODES:
            bad(f"amp={self.amp!r} is not valid; expected one of {', '.join(AMP_MODES)}")
        if self.shift_padding not in ("reflect", "zeros", "replicate"):
            bad(f"shift_padding={self.shift_padding!r}; expected reflect, zeros or replicate")
        if self.epochs < 1:
            bad(f"epochs={self.epochs} must be >= 1")
        if self.batch_size < 1:
            bad(f"batch_size={self.batch_size} must be >= 1")
        if not self.lr > 0:
            bad(f"lr={self.lr} must be > 0")
        if self.eval_every < 1:
            bad(f"eval_every={self.eval_every} must be >= 1")
        for n in ("train_subset", "test_subset", "shift_images"):
            v = getattr(self, n)
            if v is not None and v < 1:
                bad(f"{n}={v} must be >= 1")

    def replace(self, **changes: Any) -> Recipe:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise RecipeError(
                f"unknown recipe field(s) {', '.join(sorted(unknown))}; valid: "
                + ", ".join(f.name for f in dataclasses.fields(self))
            )
        if "milestones" in changes and changes["milestones"] is not None:
            changes["milestones"] = tuple(int(m) for m in changes["milestones"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "milestones" in kw:
            kw["milestones"] = tuple(kw["milestones"] or ())
        return cls(**kw)


RECIPES: dict[str, Recipe] = {
    "fast": Recipe(name="fast", notes="quick comparisons: Nesterov SGD, one-cycle, label smoothing, flips+crops"),
    "paper": Recipe(
        name="paper",
        epochs=350,
        batch_size=128,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-3,
        schedule="step",
        milestones=(200, 250, 300),
        gamma=0.1,
        label_smoothing=0.0,
        augment=False,
        eval_every=10,
        notes="Springenberg et al. 2015 sec. 3.2 (papers.md 1.3); lr from {0.25,0.1,0.05,0.01}: 0.05 chosen; "
        "batch size not in the paper; per-channel normalisation instead of GCN+ZCA; no augmentation",
    ),
    "demo": Recipe(
        name="demo",
        epochs=4,
        batch_size=64,
        lr=0.05,
        train_subset=2500,
        shift_images=500,
        notes="the fast recipe shortened for the default study: 4 epochs on a fixed 2500-image subset, batch 64",
    ),
    "adamw": Recipe(
        name="adamw",
        optimizer="adamw",
        lr=2e-3,
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=1.0,
        notes="AdamW + cosine with warm-up",
    ),
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str | Recipe = "fast", **overrides: Any) -> Recipe:
    """A built-in recipe by name, with fields overridden (``None`` values are ignored)."""
    if isinstance(name, Recipe):
        base = name
    else:
        key = str(name).strip().lower()
        if key not in RECIPES:
            raise RecipeError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
        base = RECIPES[key]
    changes = {k: v for k, v in overrides.items() if v is not None}
    if (
        "epochs" in changes
        and base.schedule == "step"
        and "milestones" not in changes
        and base.milestones
        and changes["epochs"] != base.epochs
    ):
        # keep the step schedule's shape when the run is shortened or lengthened
        scale = changes["epochs"] / base.epochs
        changes["milestones"] = tuple(max(1, round(m * scale)) for m in base.milestones)
    if not changes:
        return base
    changed = {k: v for k, v in changes.items() if k != "notes" and getattr(base, k, None) != v}
    if changed and "notes" not in changes:  # the note describes the recipe as run, not as defined
        said = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in changed.items())
        changes["notes"] = (base.notes + "; " if base.notes else "") + f"overridden here: {said}"
    return base.replace(**changes)
