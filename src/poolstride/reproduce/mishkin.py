"""``mishkin-pooling`` (optional): the pooling comparison of Mishkin et al.'s CaffeNet benchmark, at CIFAR scale.

Mishkin, Sergievskiy & Matas (2017) trained CaffeNet on 128-px ImageNet with each pooling type (top-1):
max 47.0 (Pooling.md: 0.470), avg 43.5, stochastic 43.8, max + avg 48.3, no pooling with strided convs 47.2.
Here the same arms are placed at the two 3x3/2 pooling sites of All-CNN-C (default; ``model`` = any built-in
with pool sites):

* ``max`` = max(k=3), ``avg`` = avg(k=3), ``stochastic`` = stochastic(k=3), ``max+avg`` = mixed(alpha=0.5,k=3)
  (half of Mishkin's sum; the scale is absorbed by the next conv), ``strided`` = the pool removed and the conv
  before it strided (``allcnn-c:strided``) on All-CNN models; on a ResNet (``--model resnet20``) the pooling arms
  replace its strided 3x3 convs by a stride-1 conv + the pool, and ``strided`` is the ResNet as built.

Claims (directions): max beats avg; max beats stochastic; max + avg is not worse than max (margin 1 pt);
strided ~ max (within 1 pt). Budgets as in ``allcnn`` (``paper`` = the All-CNN paper recipe, since Mishkin's
ImageNet recipe does not transfer; ``quick`` = fast recipe, 4 epochs, 5,000 images, and on All-CNN models the
same ``bn=True, final_relu=False, dropout=False`` nets as the allcnn quick budget).
"""

from __future__ import annotations

from typing import Any

from .. import models
from . import papers
from .allcnn import BUDGETS as ALLCNN_BUDGETS
from .allcnn import DEAD_NOTE, PAPER_EPOCHS, PAPER_N_TRAIN
from .common import (
    Check,
    Claims,
    Reproduction,
    Table,
    at_chance,
    describe,
    fmt_mean_ci,
)
from .training import Found, Request, Training

NAME = "mishkin-pooling"
TITLE = "Pooling types (Mishkin et al. 2017 CaffeNet benchmark) at CIFAR scale"
SOURCE = "Mishkin et al. 2017, caffenet-benchmark Pooling.md [P]"
ARMS = {"max": "max(k=3)", "avg": "avg(k=3)", "stochastic": "stochastic(k=3)", "max+avg": "mixed(alpha=0.5,k=3)"}
OPTIONS = {"model": "allcnn-c", "margin": 1.0}


def run(budget: str = "quick", **kwargs: Any) -> Reproduction:
    req = Request.parse(NAME, budget, ALLCNN_BUDGETS, OPTIONS, kwargs)
    model = str(req.options["model"]).strip().lower()
    models.get_entry(model)
    variants = [f"{n}={s}" for n, s in ARMS.items()]
    if model.startswith("allcnn-"):
        variants.append(f"strided={model}:strided")
    elif model.startswith("resnet"):
        variants.append("strided=default")  # a ResNet's own sites are strided 3x3 convs
    fields = dict(req.spec["recipe"])
    model_options = None
    if model.startswith("allcnn-"):
        model_options = req.spec.get("model_options")  # quick: BN, no dropout, as in the allcnn protocol
    else:
        fields.pop("lr", None)  # the All-CNN quick lr is tuned for All-CNN; ResNets keep the recipe's
    t = req.train(model, variants, req.recipe(fields), model_options)
    return summarize(t, model, req.budget, float(req.options["margin"]), model_options)


TABLE_NOTE = "paper: Mishkin et al. 2017 [P]; ours: CIFAR-scale, same recipe for every arm. Only directions compare."
COLUMNS = [
    "arm",
    "operator",
    "paper top-1 (CaffeNet, ImageNet-128)",
    "our acc [95% CI] (n)",
    "params",
    "train images/s",
]


def _table(t: Training, model: str, names: list[str]) -> Table:
    acc, params = t.per_seed("acc"), t.means("params")
    strided = f"{model}:strided" if model.startswith("allcnn-") else f"{model} (strided 3x3 convs)"
    rows = []
    for n in names:
        p = papers.PAPERS.get(f"mishkin/{n}/acc")
        ours = fmt_mean_ci(describe(acc.get(n, {})))
        rows.append([n, ARMS.get(n, strided), p.value if p else None, ours, params.get(n), t.speed(n)])
    return Table(f"{model}: test accuracy (%) by pooling type", COLUMNS, rows, TABLE_NOTE)


def _checks(acc: Claims, margin: float) -> list[Check]:
    checks = [
        acc.better("max", "avg", "max pooling beats average pooling"),
        acc.better("max", "stochastic", "max beats stochastic pooling"),
        acc.not_worse("max+avg", "max", margin, f"max + avg is not worse than max (margin {margin:g} pt)"),
    ]
    if "strided" in acc.values:
        checks.append(
            acc.about_equal("strided", "max", margin, f"strided convs ~ max pooling (within +-{margin:g} pt)")
        )
    return checks


def summarize(
    t: Training, model: str, budget: str, margin: float, model_options: dict[str, Any] | None = None
) -> Reproduction:
    acc = Claims(t.per_seed("acc"), SOURCE, t.floor)
    names = [*ARMS, "strided"] if "strided" in acc.values else list(ARMS)
    basis = f"paper budget: the All-CNN paper recipe ({PAPER_EPOCHS} epochs x {PAPER_N_TRAIN} images) per run"
    est = t.estimate(PAPER_EPOCHS, PAPER_N_TRAIN, basis)
    before = []
    if model_options:
        opts = ", ".join(f"{k}={v}" for k, v in model_options.items())
        before.append(f"models: every arm built with {opts} (not the paper's nets; see the allcnn protocol)")
    notes = t.notes(*before)
    if model.startswith("allcnn-") and at_chance(t.summary, t.floor):
        notes.append(DEAD_NOTE)
    found = Found([_table(t, model, names)], _checks(acc, margin), notes, est)
    what = f"{model}, arms {', '.join(names)}"
    return t.result(NAME, TITLE, t.budget(budget, what, model=model), found)


__all__ = ["ARMS", "NAME", "TITLE", "run", "summarize"]
