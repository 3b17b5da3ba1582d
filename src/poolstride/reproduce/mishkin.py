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

from . import papers
from .allcnn import BUDGETS as ALLCNN_BUDGETS
from .allcnn import DEAD_NOTE, PAPER_EPOCHS, PAPER_N_TRAIN
from .common import (
    COMMON,
    RECIPE_OVERRIDES,
    Check,
    Reproduction,
    Table,
    about_equal,
    at_chance,
    better,
    chance_floor,
    check_budget,
    dataset_label,
    describe,
    fmt_mean_ci,
    make_recipe,
    not_worse,
    paper_estimate,
    per_seed,
    pop_options,
    recipe_text,
    run_notes,
    train,
    variant_mean,
)

NAME = "mishkin-pooling"
TITLE = "Pooling types (Mishkin et al. 2017 CaffeNet benchmark) at CIFAR scale"
SOURCE = "Mishkin et al. 2017, caffenet-benchmark Pooling.md [P]"
ARMS = {"max": "max(k=3)", "avg": "avg(k=3)", "stochastic": "stochastic(k=3)", "max+avg": "mixed(alpha=0.5,k=3)"}
OPTIONS = {"model": "allcnn-c", "margin": 1.0}


def run(budget: str = "quick", **kwargs: Any) -> Reproduction:
    budget = check_budget(budget)
    b = ALLCNN_BUDGETS[budget]
    common = {k: kwargs.pop(k) for k in COMMON if k in kwargs}
    overrides = {k: kwargs.pop(k) for k in RECIPE_OVERRIDES if k in kwargs}
    opts = pop_options(NAME, kwargs, OPTIONS)
    model = str(opts["model"]).strip().lower()
    from .. import models

    models.get_entry(model)
    variants = [f"{n}={s}" for n, s in ARMS.items()]
    if model.startswith("allcnn-"):
        variants.append(f"strided={model}:strided")
    elif model.startswith("resnet"):
        variants.append("strided=default")  # a ResNet's own sites are strided 3x3 convs
    fields = dict(b["recipe"])
    model_options = None
    if model.startswith("allcnn-"):
        model_options = b.get("model_options")  # quick: BN, no dropout, as in the allcnn protocol
    else:
        fields.pop("lr", None)  # the All-CNN quick lr is tuned for All-CNN; ResNets keep the recipe's
    recipe = make_recipe(b["base"], fields, overrides)
    seeds = int(common.pop("seeds", None) or b["seeds"])
    t = train(NAME, budget, model=model, variants=variants, recipe=recipe, seeds=seeds, model_options=model_options,
              **common)  # fmt: skip
    return summarise(t, model, budget, float(opts["margin"]), model_options)


def summarise(
    t: Any, model: str, budget: str, margin: float, model_options: dict[str, Any] | None = None
) -> Reproduction:
    summ = t.summary
    acc = per_seed(summ, "acc")
    ips = variant_mean(summ, "images_per_s_mean")
    params = variant_mean(summ, "params")
    floor = chance_floor(t.dataset)
    names = [*ARMS, "strided"] if "strided" in acc else list(ARMS)
    rows = []
    for n in names:
        p = papers.PAPERS.get(f"mishkin/{n}/acc")
        rows.append(
            [
                n,
                ARMS.get(n, f"{model}:strided" if model.startswith("allcnn-") else f"{model} (strided 3x3 convs)"),
                p.value if p else None,
                fmt_mean_ci(describe(acc.get(n, {}))),
                params.get(n),
                None if not ips.get(n) else round(float(ips[n] or 0), 1),
            ]
        )
    table = Table(
        f"{model}: test accuracy (%) by pooling type",
        ["arm", "operator", "paper top-1 (CaffeNet, ImageNet-128)", "our acc [95% CI] (n)", "params", "train images/s"],
        rows,
        "paper: Mishkin et al. 2017 [P]; ours: CIFAR-scale, same recipe for every arm. Only directions compare.",
    )
    a = acc.get
    checks: list[Check] = [
        better("max", a("max", {}), "avg", a("avg", {}), "max pooling beats average pooling", SOURCE, floor=floor),
        better(
            "max", a("max", {}), "stochastic", a("stochastic", {}), "max beats stochastic pooling", SOURCE, floor=floor
        ),
        not_worse(
            "max+avg",
            a("max+avg", {}),
            "max",
            a("max", {}),
            margin,
            f"max + avg is not worse than max (margin {margin:g} pt)",
            SOURCE,
            floor=floor,
        ),
    ]
    if "strided" in acc:
        checks.append(
            about_equal(
                "strided",
                a("strided", {}),
                "max",
                a("max", {}),
                margin,
                f"strided convs ~ max pooling (within +-{margin:g} pt)",
                SOURCE,
                floor=floor,
            )
        )
    est = paper_estimate(
        ips,
        PAPER_EPOCHS,
        PAPER_N_TRAIN,
        max(3, t.seeds),
        f"paper budget: the All-CNN paper recipe ({PAPER_EPOCHS} epochs x {PAPER_N_TRAIN} images) per run",
    )
    notes = [recipe_text(t.recipe, t.dataset)]
    if model_options:
        opts = ", ".join(f"{k}={v}" for k, v in model_options.items())
        notes.append(f"models: every arm built with {opts} (not the paper's nets; see the allcnn protocol)")
    notes += run_notes(summ, floor)
    if model.startswith("allcnn-") and at_chance(summ, floor):
        notes.append(DEAD_NOTE)
    return Reproduction(
        NAME,
        TITLE,
        {
            "name": budget,
            "description": f"{budget}: {model}, arms {', '.join(names)}, {t.seeds} seeds; "
            + recipe_text(t.recipe, t.dataset),
            "model": model,
            "seeds": t.seeds,
            "recipe": t.recipe.to_dict(),
            "dataset": dataset_label(t.dataset),
        },
        t.hardware,
        [table],
        checks,
        {"wall_s": round(t.wall_s, 1), "paper_estimate": est},
        notes,
        t.study_dir,
        {},
    )


__all__ = ["ARMS", "NAME", "TITLE", "run", "summarise"]
