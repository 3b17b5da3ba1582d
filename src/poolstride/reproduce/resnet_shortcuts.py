"""``resnet-shortcuts``: CIFAR ResNet-20/56 with shortcut options A, B, D and FishNet style.

What is compared (papers.md sections 2-4):

* accuracy of each (depth, shortcut) over seeds, next to He et al. 2016 Table 6 (option A: ResNet-20 8.75 %,
  ResNet-56 6.97 % error);
* gradient flow: at initialisation (``poolstride.analysis.gradflow`` on one batch of training images, per seed)
  the weight-gradient norm of the first conv over that of the classifier, and the activation-gradient ratio;
  after training, the same first/last ratio from the last step (the trainer's ``gradflow`` record).

Claims checked (paired over seeds):

1. projection shortcuts (B) beat zero-padded identity (A) - He et al. 2016, Table 3 (ImageNet ResNet-34);
2. the ResNet-D shortcut (2x2 avg-pool + 1x1) beats B - Bag of Tricks, Sec. 4.2-4.3 (ImageNet ResNet-50);
3. a shortcut without an "isolated" conv (FishNet-style pool + concat) passes more gradient to the first layer
   than the 1x1 projection B - Sun et al. 2018, Sec. 2 (the argument, tested at initialisation);
4. ResNet-56 beats ResNet-20 (option A) - He et al. 2016, Table 6 (when both depths run);
5. ResNet-20 (A) reaches the paper's 8.75 % error within 3 pt (the JPEG copy of CIFAR-10 costs 2-3 pt) - only
   at the ``paper`` budget.

Budgets: ``paper`` = He et al. 2016's CIFAR recipe (SGD 0.9, lr 0.1, x0.1 at epochs 82 and 123 = 32k/48k
iterations, 164 epochs = 64k iterations at batch 128, weight decay 1e-4, crop + flip), depths 20 and 56, full
data. ``quick`` = ResNet-20 only, the ``fast`` recipe (one-cycle, crop + flip), 4 epochs on a 5,000-image subset,
2,000 test images; gradient flow at init for depths 20 and 56 either way.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import models
from ..analysis import gradflow
from . import papers
from .common import (
    SKIPPED,
    Check,
    Claims,
    ReproduceError,
    Reproduction,
    Table,
    Timer,
    combine,
    describe,
    error_of,
    fact,
    fmt_mean_ci,
    scale_estimate,
    split_csv,
)
from .training import Found, Request, Training

NAME = "resnet-shortcuts"
TITLE = "CIFAR ResNet shortcuts A / B / D / FishNet-style: accuracy and gradient flow"
SHORTCUT_LABEL = {
    "A": "A: x[::2, ::2] + zero channels (He 2016)",
    "B": "B: 1x1/2 conv + BN (He 2016)",
    "D": "D: 2x2 avg-pool + 1x1 conv + BN (Bag of Tricks)",
    "fish": "fish: 2x2 max-pool + concat copies (FishNet-style)",
    "fish-id": "fish-id: 2x2 max-pool + zero channels",
}
HE_CIFAR = {
    "name": "he2016-cifar",
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "schedule": "step",
    "milestones": (82, 123),
    "gamma": 0.1,
    "epochs": 164,
    "batch_size": 128,
    "label_smoothing": 0.0,
    "augment": True,
    "eval_every": 10,
    "shift_images": 2000,
    "notes": "He et al. 2016 Sec. 4.2: lr 0.1 /10 at 32k and 48k iterations, stop at 64k (batch 128)",
}
PAPER_EPOCHS, PAPER_N_TRAIN = 164, 50_000
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {
        "base": "fast",
        "depths": "20",
        "recipe": {"epochs": 4, "train_subset": 5000, "test_subset": 2000, "shift_images": 500},
        "seeds": 3,
    },
    "paper": {"base": "fast", "depths": "20,56", "recipe": HE_CIFAR, "seeds": 3},
}
OPTIONS = {"depths": None, "shortcuts": "A,B,D,fish", "gradflow": True, "gradflow_depths": "20,56"}
SRC_HE3 = "He et al. 2016, Table 3 (ImageNet ResNet-34) [P]"
SRC_BOT = "He et al. 2019, Bag of Tricks, Sec. 4.2-4.3 [S]"
SRC_FISH = "Sun et al. 2018, FishNet Sec. 2 [S]"
SRC_HE6 = "He et al. 2016, Table 6 [P]"


def vname(depth: int, shortcut: str) -> str:
    return f"resnet{depth}:{shortcut.lower()}"


def _norm_shortcut(s: str) -> str:
    low = s.strip().lower()
    if low in ("a", "b", "d"):
        return low.upper()
    if low in ("fish", "fish-id"):
        return low
    raise ReproduceError(f"resnet-shortcuts: unknown shortcut {s!r}; valid: A, B, D, fish, fish-id")


def _depths(text: str) -> list[int]:
    try:
        ds = [int(d) for d in split_csv(text)]
    except ValueError:
        raise ReproduceError(f"resnet-shortcuts: bad --depths {text!r}; use e.g. 20,56") from None
    bad = [d for d in ds if d < 8 or (d - 2) % 6]
    if bad or not ds:
        raise ReproduceError(f"resnet-shortcuts: depths must be 6n+2 (20, 32, 44, 56, 110), got {text!r}")
    return ds


def gradflow_at_init(ds: Any, depth: int, shortcut: str, seed: int, batch: int = 64) -> dict[str, float]:
    """First/last weight-gradient ratio and activation-gradient ratio of a freshly initialised model on one
    batch of (normalised) training images, via ``poolstride.analysis.gradflow``."""
    torch.manual_seed(seed)
    model = models.build(vname(depth, shortcut), num_classes=len(ds.classes), in_channels=int(ds.x_train.shape[1]))
    g = torch.Generator().manual_seed(1000 + seed)
    idx = torch.randperm(len(ds.x_train), generator=g)[:batch]
    x = ds.x_train[idx].float() / 255.0
    mean = torch.tensor(list(ds.mean)).view(1, -1, 1, 1)
    std = torch.tensor(list(ds.std)).view(1, -1, 1, 1)
    gf = gradflow(model, ((x - mean) / std, ds.y_train[idx].long()), seed=seed)
    return {"ratio": gf.ratio, "activation_ratio": gf.activation_ratio}


def _trained_ratio(run: dict[str, Any]) -> float | None:
    g = run.get("gradflow") or {}
    norms = g.get("grad_norm") or []
    if len(norms) < 2 or not norms[-1]:
        return None
    return float(norms[0]) / float(norms[-1])


GradFlow = dict[str, dict[int, dict[str, float]]]  # variant -> seed -> {"ratio", "activation_ratio"}


def run(budget: str = "quick", **kwargs: Any) -> Reproduction:
    """Run the shortcut protocol; see the module doc for budgets and options."""
    req = Request.parse(NAME, budget, BUDGETS, OPTIONS, kwargs)
    timer = Timer()
    opts = req.options
    depths = _depths(opts["depths"] or req.spec["depths"])
    shortcuts = [_norm_shortcut(s) for s in split_csv(opts["shortcuts"])]
    if not shortcuts:
        raise ReproduceError("resnet-shortcuts: --shortcuts is empty")
    variants = [vname(d, s) for d in depths for s in shortcuts]
    t = req.train(f"resnet{depths[0]}", variants, req.recipe())
    cb = req.study.callback or (lambda event, **kw: None)
    gf: GradFlow = {}
    gdepths = sorted(set(_depths(opts["gradflow_depths"])) | set(depths)) if opts["gradflow"] else []
    for d in gdepths:
        for s in shortcuts:
            for seed in range(req.seeds):
                cb("gradflow", depth=d, shortcut=s, seed=seed)
                gf.setdefault(vname(d, s), {})[seed] = gradflow_at_init(t.dataset, d, s, seed)
    t.wall_s = timer.seconds
    return summarize(t, depths, shortcuts, gf, budget)


ACC_COLUMNS = [
    "net",
    "shortcut",
    "paper error",
    "our error mean [95% CI] (n)",
    "params",
    "shift-consistency %",
    "trained grad first/last",
    "train images/s",
]
ACC_NOTE = (
    "paper: He et al. 2016 Table 6 (option A only) [P]. 'trained grad first/last': weight-gradient norm of the "
    "first conv / the classifier at the last training step."
)
GRADFLOW_TITLE = "Gradient flow at initialisation (one batch of 64 training images per seed)"
GRADFLOW_COLUMNS = ["net", "shortcut", "weight-grad first conv / classifier", "activation-grad first / last layer"]
GRADFLOW_NOTE = (
    "poolstride.analysis.gradflow in train mode with the true labels; a larger "
    "ratio = more gradient reaches the first layer."
)
# the paired accuracy claims: (a, b, part, source, claim) - "a beats b" at every depth run
PAIRS = (
    ("B", "A", "B beats A", SRC_HE3, "Projection shortcuts (B) are better than zero-padded identity (A)"),
    ("D", "B", "D beats B", SRC_BOT, "ResNet-D's avg-pool shortcut is better than the strided 1x1 (B)"),
    (
        "fish",
        "B",
        "fish beats B on accuracy",
        SRC_FISH,
        "FishNet-style shortcut is better than B on accuracy (implied)",
    ),
)
FISH_GRADFLOW = "A shortcut without an isolated conv (fish) passes more gradient to the first layer than B (at init)"
HE_CIFAR_ERROR = "ResNet-20 (A) reaches 8.75% error (within 3 pt: the JPEG copy costs 2-3 pt)"


def _ratio(values: dict[int, float]) -> str:
    return fmt_mean_ci(describe(values), 3, (0.0, None))


def _acc_table(t: Training, depths: list[int], shortcuts: list[str], acc: dict[str, dict[int, float]]) -> Table:
    shift = t.per_seed("shift_consistency")
    params = t.means("params")
    trained: dict[str, dict[int, float]] = {}
    for r in t.summary.get("runs", []):
        tr = _trained_ratio(r) if r.get("status") == "ok" else None
        if tr is not None and tr > 0:
            trained.setdefault(r["variant"], {})[int(r["seed"])] = tr
    rows = []
    for d in depths:
        for s in shortcuts:
            v = vname(d, s)
            paper = papers.PAPERS.get(f"resnet{d}/{s}/error")
            rows.append(
                [
                    f"ResNet-{d}", SHORTCUT_LABEL[s], paper.value if paper else None,
                    fmt_mean_ci(describe(error_of(acc.get(v, {})))), params.get(v),
                    fmt_mean_ci(describe(shift.get(v, {})), 1), _ratio(trained.get(v, {})), t.speed(v),
                ]
            )  # fmt: skip
    return Table("CIFAR-10 test error (%) by shortcut", ACC_COLUMNS, rows, ACC_NOTE)


def _gradflow_table(gf: GradFlow) -> tuple[Table, dict[str, dict[int, float]]]:
    """The table of gradient ratios at initialisation, and log10 of the weight-gradient ratio by variant and seed
    (what the gradient-flow claim compares)."""
    rows = []
    log_gf: dict[str, dict[int, float]] = {}
    for v, per in gf.items():
        r = {s: x["ratio"] for s, x in per.items() if x["ratio"] and math.isfinite(x["ratio"])}
        a = {s: x["activation_ratio"] for s, x in per.items() if math.isfinite(x["activation_ratio"])}
        log_gf[v] = {s: math.log10(x) for s, x in r.items() if x > 0}
        dep, sc = v.split(":")
        rows.append([dep.replace("resnet", "ResNet-"), SHORTCUT_LABEL[_norm_shortcut(sc)], _ratio(r), _ratio(a)])
    return Table(GRADFLOW_TITLE, GRADFLOW_COLUMNS, rows, GRADFLOW_NOTE), log_gf


def _checks(
    t: Training, depths: list[int], shortcuts: list[str], log_gf: dict[str, dict[int, float]], budget: str
) -> list[Check]:
    acc = t.per_seed("acc")
    pairs = {}
    for a, b, part, source, claim in PAIRS:
        if a in shortcuts and b in shortcuts:
            on = Claims(acc, source, t.floor)
            pairs[a] = combine(
                claim, source, [on.better(vname(d, a), vname(d, b), f"ResNet-{d}: {part}") for d in depths]
            )
    grads = Claims(log_gf, SRC_FISH, None, "log10")
    fish_gf = [
        grads.better(vname(gd, "fish"), vname(gd, "B"), f"ResNet-{gd}: fish passes more gradient than B")
        for gd in sorted({int(v.split(":")[0].removeprefix("resnet")) for v in log_gf})
        if vname(gd, "fish") in log_gf and vname(gd, "B") in log_gf
    ]
    checks = [pairs[k] for k in ("B", "D") if k in pairs]
    if fish_gf:
        checks.append(combine(FISH_GRADFLOW, SRC_FISH, fish_gf))
    checks += [pairs[k] for k in ("fish",) if k in pairs]
    if 20 in depths and 56 in depths and "A" in shortcuts:
        on = Claims(acc, SRC_HE6, t.floor)
        checks.append(on.better(vname(56, "A"), vname(20, "A"), "ResNet-56 beats ResNet-20 (option A)"))
    if 20 in depths and "A" in shortcuts:
        e = describe(error_of(acc.get(vname(20, "A"), {})))
        if budget != "paper":
            detail = f"quick budget (our error {fmt_mean_ci(e)}); run --budget paper"
            checks.append(Check(HE_CIFAR_ERROR, SRC_HE6, SKIPPED, detail))
        elif e["mean"] is not None:
            ok = abs(e["mean"] - papers.value("resnet20/A/error")) <= 3.0
            checks.append(fact(HE_CIFAR_ERROR, SRC_HE6, ok, f"ours {fmt_mean_ci(e)}"))
    return checks


def summarize(t: Training, depths: list[int], shortcuts: list[str], gf: GradFlow, budget: str) -> Reproduction:
    tables = [_acc_table(t, depths, shortcuts, t.per_seed("acc"))]
    log_gf: dict[str, dict[int, float]] = {}
    if gf:
        gf_table, log_gf = _gradflow_table(gf)
        tables.append(gf_table)
    checks = _checks(t, depths, shortcuts, log_gf, budget)
    basis = f"paper budget: {PAPER_EPOCHS} epochs (64k iterations at batch 128) x {PAPER_N_TRAIN} images per run"
    est = t.estimate(PAPER_EPOCHS, PAPER_N_TRAIN, basis)
    if 56 not in depths:  # ResNet-56 costs ~3.1x ResNet-20 per image (MACs)
        scale_estimate(est, 1 + 125.5 / 40.6, "with ResNet-56 added (scaled by MACs)")
    notes = t.notes()
    if budget == "quick":
        notes.append("quick budget: absolute errors are far above the paper's; compare the variants with each other.")
    what = f"ResNet-{'/'.join(map(str, depths))} x shortcuts {', '.join(shortcuts)}"
    data = {"gradflow_init": {v: {str(s): x for s, x in per.items()} for v, per in gf.items()}}
    found = Found(tables, checks, notes, est, data)
    return t.result(NAME, TITLE, t.budget(budget, what, depths=depths, shortcuts=shortcuts), found)


__all__ = ["BUDGETS", "NAME", "TITLE", "gradflow_at_init", "run", "summarize"]
