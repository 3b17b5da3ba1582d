"""Figures of the report (matplotlib, Agg backend, imported lazily), each saved as PNG and SVG.

Colours follow the Okabe-Ito colour-blind-safe palette; the baseline is black. Every figure function
returns a dict ``{"name", "title", "caption", "png", "svg"}`` or None with a note saying why it was skipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..results.format import fmt_count, fmt_delta
from ..results.stats import CANNOT_TELL, SiteVerdict, site_verdict
from .load import Study

# Okabe & Ito (2008). Black first (baseline), yellow last (weak contrast on white).
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p"]
PNG_DPI = 200


def _mpl() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": PNG_DPI,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linewidth": 0.6,
            "lines.linewidth": 1.6,
            "svg.hashsalt": "poolstride",
            "svg.fonttype": "path",
        }
    )
    return plt


class Style:
    """Colour, marker, line style and bar hatch of each variant, fixed by its order in the study.

    The baseline alone is black (circle, hatched bars); the other variants cycle through the 7 other Okabe-Ito
    colours, and from the 8th on also differ by line style and hatch; markers cycle with another period.
    """

    def __init__(self, variants: list[str], baseline: str) -> None:
        order = [baseline] + [v for v in variants if v != baseline]
        self.color = {baseline: OKABE_ITO[0]}
        self.marker = {baseline: MARKERS[0]}
        self.linestyle = {baseline: "-"}
        self.hatch: dict[str, str | None] = {baseline: "//"}
        n = len(OKABE_ITO) - 1
        for j, v in enumerate(order[1:]):
            self.color[v] = OKABE_ITO[1 + j % n]
            self.marker[v] = MARKERS[1 + j % (len(MARKERS) - 1)]
            self.linestyle[v] = ["-", "--", ":", "-."][(j // n) % 4]
            self.hatch[v] = [None, "..", "xx", "--"][(j // n) % 4]
        self.order = order


def _figure(fig: Any, outdir: Path, name: str, title: str, caption: str, *, tight: bool = True) -> dict[str, Any]:
    """Lay out ``fig`` (``tight``), save it as ``outdir/NAME.png`` and ``.svg``, close it, and return the
    figure's record."""
    if tight:
        fig.tight_layout()
    png = outdir / f"{name}.png"
    svg = outdir / f"{name}.svg"
    fig.savefig(png, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return {
        "name": name,
        "title": title,
        "caption": caption,
        "png": f"figures/{png.name}",
        "svg": f"figures/{svg.name}",
    }


def _legend_below(fig: Any, handles: list[Any], labels: list[str]) -> None:
    """The figure's legend centred below its axes, at most 5 columns."""
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 5), frameon=False)


def _log_y(ax: Any) -> None:
    """A log y axis whose ticks read as plain numbers (2.1, not 2.1x10^0)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:.3g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def _err(centre: float, ci: Any) -> list[list[float]] | None:
    """Matplotlib error-bar lengths ``[[below], [above]]`` of a CI around ``centre``; None without a CI."""
    return [[centre - ci[0]], [ci[1] - centre]] if ci else None


def _label(v: str, width: int = 28) -> str:
    return v if len(v) <= width else v[: width - 1] + "…"


def _middle(v: str, width: int = 32) -> str:
    """``v`` shortened in the middle (a module path's head and tail both tell sites apart)."""
    if len(v) <= width:
        return v
    head = (width - 1) // 2
    return v[:head] + "…" + v[-(width - 1 - head) :]


def _count_ticks(axis: Any) -> None:
    """Ticks of a count axis that read ``1.5M``, ``250``."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt_count(x, style="plain")))


def pareto_figure(data: dict[str, Any], style: Style, outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()

    rows = [v for v in data["variants"] if v["acc"]["mean"] is not None]
    axes_spec = [
        ("macs", "MACs (forward, conv + linear)", lambda v: v["costs"]["macs"]),
        ("latency_ms", "latency (ms, fastest seed)", lambda v: v["costs"]["latency_ms"]["min"]),
        ("params", "parameters", lambda v: v["costs"]["params"]),
    ]
    axes_spec = [a for a in axes_spec if any(a[2](v) is not None for v in rows)]
    if not axes_spec:
        return None
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(3.6 * len(axes_spec), 3.4), squeeze=False, sharey=True)
    for ax, (key, xlabel, get) in zip(axes[0], axes_spec, strict=True):
        front = data["pareto"][key]["front"]
        pts = [(v, get(v)) for v in rows if get(v) is not None]
        xs = [c for _, c in pts]
        if front:
            fx = [get(next(v for v in rows if v["name"] == n)) for n in front]
            fy = [next(v for v in rows if v["name"] == n)["acc"]["mean"] for n in front]
            ax.step(fx, fy, where="post", color="#999999", lw=1.0, zorder=1, label="Pareto front")
        for v, c in pts:
            name = v["name"]
            y = v["acc"]["mean"]
            ci = v["acc"]["ci"]
            yerr = _err(y, ci)
            on = name in front
            ax.errorbar(
                [c],
                [y],
                yerr=yerr,
                fmt=style.marker[name],
                color=style.color[name],
                mfc=style.color[name] if on else "white",
                mec=style.color[name],
                ms=8 if on else 6,
                mew=1.5,
                capsize=3,
                elinewidth=1.0,
                zorder=3,
                label=_label(name) if ax is axes[0][0] else None,
            )
        if len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        else:
            _count_ticks(ax.xaxis)
        if xs and max(xs) == min(xs):
            ax.set_xlim(min(xs) * 0.9 - 1e-9, max(xs) * 1.1 + 1e-9)
        ax.set_xlabel(xlabel)
        ax.set_title(f"accuracy vs {data['pareto'][key]['label']}")
    axes[0][0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    _legend_below(fig, handles, labels)
    caption = (
        f"Mean test accuracy over seeds with {'95% CI' if data['status']['enough_seeds'] else 'no CI (1 seed)'} "
        "error bars against each cost. Filled markers and the grey step line: the Pareto front (no other variant "
        "is both cheaper and more accurate on the mean); hollow markers: dominated variants."
    )
    return _figure(fig, outdir, "pareto", "Accuracy vs cost (Pareto fronts)", caption)


def curves_figure(study: Study, data: dict[str, Any], style: Style, outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()
    from matplotlib.ticker import MaxNLocator

    panels = [("test_acc", "test accuracy (%)"), ("train_loss", "training loss")]
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
    for name in style.order:
        runs = study.ok_runs(name)
        if not runs:
            continue
        for key, _ in panels:
            by_epoch: dict[int, list[float]] = {}
            for r in runs:
                for row in r.metrics():
                    e, val = row.get("epoch"), row.get(key)
                    if isinstance(e, (int, float)) and isinstance(val, (int, float)) and math.isfinite(val):
                        by_epoch.setdefault(int(e), []).append(float(val))
            if not by_epoch:
                continue
            ep = np.array(sorted(by_epoch))
            vals = [np.array(by_epoch[e]) for e in ep]
            series.setdefault(name, {})[key] = (
                ep,
                np.array([v.mean() for v in vals]),
                np.array([v.min() for v in vals]),
                np.array([v.max() for v in vals]),
            )
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.2))
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        for name in style.order:
            s = series.get(name, {}).get(key)
            if s is None:
                continue
            ep, mean, lo, hi = s
            ax.plot(ep, mean, color=style.color[name], ls=style.linestyle[name], label=_label(name))
            if (hi > lo).any():
                ax.fill_between(ep, lo, hi, color=style.color[name], alpha=0.18, lw=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        if key == "train_loss":
            _log_y(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[1].get_legend_handles_labels()
    _legend_below(fig, handles, labels)
    return _figure(
        fig,
        outdir,
        "curves",
        "Training curves",
        "Per-epoch test accuracy and training loss from runs/*/seed*/metrics.jsonl: the line is the mean "
        "over seeds, the band spans the minimum to the maximum over seeds.",
    )


def gradflow_figure(study: Study, style: Style, outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()
    per: dict[str, tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in style.order:
        layers: list[str] | None = None
        rows = []
        for r in study.ok_runs(name):
            g = r.result.get("gradflow")
            if not isinstance(g, dict):
                continue
            norms = g.get("grad_norm")
            if not isinstance(norms, list) or not norms:
                continue
            try:
                arr = np.array([float(x) for x in norms])
            except (TypeError, ValueError):
                continue
            lay = [str(x) for x in (g.get("layers") or [])]
            if layers is None:
                layers = lay
            if lay != layers or arr.size != (len(layers) or arr.size):
                continue
            rows.append(arr)
        if rows:
            a = np.vstack(rows)
            per[name] = (layers or [], a.mean(axis=0), a.min(axis=0), a.max(axis=0))
    if not per:
        return None
    fig, ax = plt.subplots(figsize=(7.6, 3.4))
    same = len({tuple(v[0]) for v in per.values()}) == 1
    for name, (_layers, mean, lo, hi) in per.items():
        # one list of layers: by layer; different lists (variants add or remove layers): by relative depth, so
        # that one x position never means different layers in different variants
        x = np.arange(mean.size) if same else np.linspace(0.0, 1.0, mean.size) if mean.size > 1 else np.zeros(1)
        ax.plot(
            x,
            mean,
            color=style.color[name],
            ls=style.linestyle[name],
            marker=style.marker[name],
            ms=4,
            label=_label(name),
        )
        if (hi > lo).any():
            ax.fill_between(x, lo, hi, color=style.color[name], alpha=0.15, lw=0)
    positive = all((v[1] > 0).all() for v in per.values())
    if positive:
        _log_y(ax)
    layers0 = next(iter(per.values()))[0]
    if same and layers0 and len(layers0) <= 40:
        ax.set_xticks(np.arange(len(layers0)))
        ax.set_xticklabels([_label(x, 18) for x in layers0], rotation=60, ha="right")
        ax.set_xlabel("layer (input → output)")
    elif same:
        ax.set_xlabel("layer index (input → output)")
    else:
        ax.set_xlabel("relative depth (0 = first layer, 1 = last; the variants have different layers)")
    ax.set_ylabel("gradient norm")
    ax.legend(loc="best", frameon=False)
    return _figure(
        fig,
        outdir,
        "gradflow",
        "Gradient norm vs depth",
        "Per-layer gradient L2 norm (result.json gradflow), mean over seeds with a min-max band. "
        "A steep fall towards the input means weak gradient flow through the downsampling stack.",
    )


def shift_figure(data: dict[str, Any], style: Style, outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()
    rows = [v for v in data["variants"] if v["shift_consistency"]["mean"] is not None]
    if not rows:
        return None
    base = data["options"]["baseline"]
    rows.sort(key=lambda v: style.order.index(v["name"]))
    has_circ = any(v["shift_consistency_circular"]["mean"] is not None for v in rows)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 2.0), 3.4))
    x = np.arange(len(rows))
    w = 0.38 if has_circ else 0.6
    for i, v in enumerate(rows):
        s = v["shift_consistency"]
        ci = s["ci"]
        yerr = _err(s["mean"], ci)
        ax.bar(
            x[i] - (w / 2 if has_circ else 0),
            s["mean"],
            w,
            color=style.color[v["name"]],
            hatch=style.hatch[v["name"]],
            edgecolor="white" if v["name"] != base else "#666666",
            yerr=yerr,
            capsize=3,
            error_kw={"elinewidth": 1.0},
        )
        sc = v["shift_consistency_circular"]
        if has_circ and sc["mean"] is not None:
            ci2 = sc["ci"]
            yerr2 = _err(sc["mean"], ci2)
            ax.bar(
                x[i] + w / 2,
                sc["mean"],
                w,
                color=style.color[v["name"]],
                alpha=0.45,
                yerr=yerr2,
                capsize=3,
                error_kw={"elinewidth": 1.0},
            )
    lows = [v["shift_consistency"]["min"] for v in rows if v["shift_consistency"]["min"] is not None]
    lo = max(0.0, 5.0 * math.floor((min(lows) - 5.0) / 5.0)) if lows else 0.0
    ax.set_ylim(lo, 100.0)
    ax.set_xticks(x)
    tilt = len(rows) > 4 or any(len(v["name"]) > 12 for v in rows)
    ax.set_xticklabels(
        [_label(v["name"], 26) for v in rows], rotation=25 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_ylabel("shift-consistency (%)")
    ax.grid(axis="x", visible=False)
    if has_circ:
        from matplotlib.patches import Patch

        proxies = [
            Patch(facecolor="#777777", label="shifted with padding"),
            Patch(facecolor="#777777", alpha=0.45, label="circular shift"),
        ]
        ax.legend(handles=proxies, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    return _figure(
        fig,
        outdir,
        "shift",
        "Shift-consistency",
        "How often the prediction stays the same when the input is shifted (mean over seeds, 95% CI; the "
        f"hatched bar is the baseline {base}). The y axis starts at {lo:g}%."
        + (" Light bars: circular shifts." if has_circ else ""),
    )


def costs_figure(study: Study, data: dict[str, Any], style: Style, outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()

    rows = [v for v in data["variants"] if v["n"] > 0]
    # Per-site costs when the runs store them (optional result field `sites`).
    sites: dict[str, list[dict[str, Any]]] = {}
    for v in rows:
        for r in study.ok_runs(v["name"]):
            s = r.result.get("sites")
            if isinstance(s, list) and s and all(isinstance(x, dict) for x in s):
                sites[v["name"]] = s
                break
    if sites:
        names = [v["name"] for v in rows if v["name"] in sites]
        fig, ax = plt.subplots(figsize=(7.6, 0.5 * len(names) + 1.6))
        max_sites = max(len(sites[n]) for n in names)
        for j in range(max_sites):
            lefts = []
            widths = []
            for n in names:
                s = sites[n]
                prev = sum(float(x.get("macs") or 0) + float(x.get("other_ops") or 0) for x in s[:j])
                cur = float(s[j].get("macs") or 0) + float(s[j].get("other_ops") or 0) if j < len(s) else 0.0
                lefts.append(prev)
                widths.append(cur)
            ax.barh(
                np.arange(len(names)),
                widths,
                left=lefts,
                # shades of grey by site order: the variant colours mean variants everywhere else in the report
                color=str(round(0.25 + 0.55 * j / max(max_sites - 1, 1), 3)),
                edgecolor="white",
                lw=0.8,
                label=f"site {j + 1}",
            )
        for i, n in enumerate(names):
            tot = sum(float(x.get("macs") or 0) + float(x.get("other_ops") or 0) for x in sites[n])
            opl = [str(x.get("op", "?")) for x in sites[n]]
            ops = f"{len(opl)} × {opl[0]}" if len(set(opl)) == 1 else ", ".join(opl)
            ax.text(tot, i, f"  {_label(ops, 40)}", va="center", fontsize=7)
        ax.set_yticks(np.arange(len(names)))
        ax.set_yticklabels([_label(n, 22) for n in names])
        ax.invert_yaxis()
        _count_ticks(ax.xaxis)
        ax.set_xlabel("MACs + other ops at the downsampling sites")
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(max_sites, 6), frameon=False)
        ax.margins(x=0.35)
        return _figure(
            fig,
            outdir,
            "costs",
            "Cost per downsampling site",
            "MACs plus other ops (comparisons, adds) of each downsampling site, stacked from the input "
            "side; the text lists the operator at each site (result.json sites).",
        )
    have = [v for v in rows if v["costs"]["macs"] is not None]
    if not have:
        return None
    fig, ax = plt.subplots(figsize=(7.6, 0.45 * len(have) + 1.4))
    y = np.arange(len(have))
    macs = np.array([float(v["costs"]["macs"]) for v in have])
    other = np.array([float(v["costs"]["other_ops"] or 0) for v in have])
    ax.barh(y, macs, color=OKABE_ITO[4], label="MACs (conv + linear)")
    ax.barh(y, other, left=macs, color=OKABE_ITO[1], label="other ops (pooling, elementwise)")
    ax.set_yticks(y)
    ax.set_yticklabels([_label(v["name"], 22) for v in have])
    ax.invert_yaxis()
    _count_ticks(ax.xaxis)
    ax.set_xlabel("operations per image (forward)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    return _figure(
        fig,
        outdir,
        "costs",
        "Cost breakdown",
        "Whole-model forward cost: conv/linear MACs and other ops counted separately. The runs store no "
        "per-site costs (optional result.json field `sites`), so this shows totals only.",
    )


def _load_erf(run_dir: Path, rel: Any) -> np.ndarray | None:
    if not isinstance(rel, str) or not rel:
        return None
    try:
        p = (run_dir / rel).resolve()
        if not p.is_relative_to(run_dir.resolve()) or not p.is_file():
            return None
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError):
        return None
    a = np.asarray(a, dtype=float)
    if a.ndim == 3:
        a = np.abs(a).sum(axis=0)
    if a.ndim != 2 or a.size == 0 or not np.isfinite(a).all():
        return None
    a = np.abs(a)
    m = a.max()
    return a / m if m > 0 else a


def erf_figure(study: Study, style: Style, outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()
    imgs: dict[str, np.ndarray] = {}
    for name in style.order:
        arrs = [a for r in study.ok_runs(name) if (a := _load_erf(r.dir, r.result.get("erf"))) is not None]
        if arrs and len({a.shape for a in arrs}) == 1:
            imgs[name] = np.mean(arrs, axis=0)
        elif arrs:
            imgs[name] = arrs[0]
    if not imgs:
        return None
    k = len(imgs)
    cols = min(k, 4)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols + 0.6, 2.3 * rows), squeeze=False)
    im = None
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, a) in zip(axes.flat, imgs.items(), strict=False):
        im = ax.imshow(a, cmap="cividis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(_label(name, 22), fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="|gradient| (normalised)")
    return _figure(
        fig,
        outdir,
        "erf",
        "Effective receptive fields",
        "Gradient magnitude of a centre output unit with respect to the input (result.json erf), "
        "normalised to its maximum and averaged over seeds.",
        tight=False,
    )


VERDICT_STYLE = {  # colour, marker, legend label; Okabe-Ito bluish green / vermillion, grey for no verdict
    SiteVerdict.HELPS: (OKABE_ITO[3], "^", "detectably better"),
    SiteVerdict.HURTS: (OKABE_ITO[5], "v", "detectably worse"),
    SiteVerdict.CANNOT_TELL: ("#8c8c8c", "o", CANNOT_TELL),
}


def _macs_margin(ax: Any, rows: list[dict[str, Any]]) -> None:
    """The MACs change of each site, in the right margin of ``ax`` (one row per site)."""
    ax.annotate(
        "ΔMACs", (1.03, -0.5), xycoords=("axes fraction", "data"), ha="left", va="bottom", fontsize=7.5, weight="bold"
    )
    for i, r in enumerate(rows):
        dm = r["macs"]
        if dm.get("delta") is None:
            txt = "n/a"
        else:
            txt = ("+" if dm["delta"] >= 0 else "−") + fmt_count(abs(float(dm["delta"])), style="plain")
            if dm.get("delta_pct") is not None:
                txt += f" ({fmt_delta(dm['delta_pct'], 1, '%')})"
        ax.annotate(txt, (1.03, i), xycoords=("axes fraction", "data"), ha="left", va="center", fontsize=7.5)


def per_site_figure(data: dict[str, Any], outdir: Path) -> dict[str, Any] | None:
    plt = _mpl()
    from matplotlib.lines import Line2D

    rows = [r for r in data.get("per_site") or [] if r["acc"]["diff_mean"] is not None]
    if not rows:
        return None
    # model order: study order is the model's execution order; a stable sort by stage keeps it for mixed studies
    rows = sorted(rows, key=lambda r: r["stage"] if isinstance(r.get("stage"), int) else math.inf)
    base = data["options"]["baseline"]
    n = len(rows)
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 0.42 * n + 1.5), sharey=True)
    y = np.arange(n)
    panels = [("acc", "accuracy change (pt)"), ("shift_consistency", "shift-consistency change (pt)")]
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        xs: list[float] = [0.0]
        for i, r in enumerate(rows):
            m = r[key]
            d = m["diff_mean"]
            if d is None:
                continue
            color, marker, _ = VERDICT_STYLE[r["verdict"] if key == "acc" else site_verdict(m.get("verdict"))]
            ci = m["ci"]
            xerr = _err(d, ci)
            ax.errorbar(
                [d],
                [i],
                xerr=xerr,
                fmt=marker,
                color=color,
                mfc=color if ci else "white",
                mec=color,
                ms=7,
                mew=1.5,
                capsize=3,
                elinewidth=1.2,
                zorder=3,
            )
            xs += [d] + (list(ci) if ci else [])
        ax.axvline(0.0, color="#000000", lw=0.9, zorder=1)
        lo, hi = min(xs), max(xs)
        pad = 0.08 * (hi - lo) if hi > lo else 1.0
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
    one = "" if data["status"]["enough_seeds"] else " (1 seed: no CI, no verdict)"
    axes[0].set_title(f"site variant − {_label(base, 20)}{one}", loc="left")
    labels = []
    for r in rows:
        stage = "?" if r.get("stage") is None else r["stage"]
        sub = f"{r.get('kind') or '?'}@{stage}" + (f" · {r['resolution']}" if r.get("resolution") else "")
        labels.append(f"{_middle(r['path'], 40)}\n{sub}")
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels, fontsize=7.5)
    axes[0].set_ylim(n - 0.5, -0.5)  # first site (input side) on top
    _macs_margin(axes[1], rows)
    proxies = [
        Line2D([], [], ls="", marker=mk, color=c, mfc=c, ms=6, label=lab) for c, mk, lab in VERDICT_STYLE.values()
    ]
    _legend_below(fig, proxies, [lab for _, _, lab in VERDICT_STYLE.values()])
    ci_txt = "95% CI error bars (filled markers; hollow: no CI)" if data["status"]["enough_seeds"] else "no CI (1 seed)"
    return _figure(
        fig,
        outdir,
        "per_site",
        "Per-site ablation: the change at one site at a time",
        f"Paired difference from {base} (mean over seeds, {ci_txt}) when only that site is changed, "
        "sites from the input side (top) down. Colour and marker: detectably better / worse after Holm correction "
        "(accuracy panel: the site's verdict; right panel: the shift-consistency verdict) or cannot tell. "
        "Right margin: the change in MACs.",
    )


def make_figures(study: Study, data: dict[str, Any], outdir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Draw every figure into ``outdir``; return the figure records and notes on the skipped ones."""
    outdir.mkdir(parents=True, exist_ok=True)
    plt = _mpl()
    style = Style(study.variants, data["options"]["baseline"])
    figs: list[dict[str, Any]] = []
    notes: list[str] = []
    jobs: list[tuple[str, Any]] = [("per_site", lambda: per_site_figure(data, outdir))] if data.get("per_site") else []
    jobs += [
        ("pareto", lambda: pareto_figure(data, style, outdir)),
        ("curves", lambda: curves_figure(study, data, style, outdir)),
        ("gradflow", lambda: gradflow_figure(study, style, outdir)),
        ("shift", lambda: shift_figure(data, style, outdir)),
        ("costs", lambda: costs_figure(study, data, style, outdir)),
        ("erf", lambda: erf_figure(study, style, outdir)),
    ]
    why = {
        "per_site": "no site variant has a paired accuracy difference",
        "pareto": "no variant has both an accuracy and a cost",
        "curves": "no metrics.jsonl with test_acc or train_loss",
        "gradflow": "no run stores gradflow in result.json",
        "shift": "no run stores shift_consistency",
        "costs": "no run stores macs",
        "erf": "no run stores an erf .npy (optional result.json field `erf`)",
    }
    for name, job in jobs:
        try:
            rec = job()
        except Exception as e:  # noqa: BLE001 - one bad figure must not cost the whole report
            notes.append(f"figure {name} failed: {type(e).__name__}: {e}")
            continue
        finally:
            plt.close("all")
        if rec is None:
            notes.append(f"figure {name} skipped: {why[name]}")
        else:
            figs.append(rec)
    return figs, notes
