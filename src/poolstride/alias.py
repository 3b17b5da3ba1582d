"""Aliasing at the downsampling sites of a model or of a study's checkpoints, and the alias figures.

The signal-processing analysis itself (operators and single modules probed with 2-D sinusoids) lives in
:mod:`poolstride.analysis.alias`; this module sits above the surgery and the variants, which it needs to find the
sites of a model and to rebuild the models of a study. Its namespace also carries the operator analysis, so
``from poolstride import alias`` gives the whole aliasing API.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .analysis import alias as signal
from .analysis.alias import *  # noqa: F403 - the operator analysis is part of this API (signal.__all__)
from .analysis.alias import DEFAULT_FREQS, AliasResult, analyze_module, fold
from .errors import PoolstrideError
from .resolve import add_study_import_path
from .results.study import StudyFileError, read_study
from .surgery import sites
from .variants import Variant, slugify
from .variants import build as build_variant


def site_size(in_size: Sequence[int] | None, stride: int, max_size: int) -> int | None:
    """The square canvas a site is probed on: its input side (the smaller), capped at ``max_size``, rounded down to
    a multiple of the stride; None when that leaves less than 4x4 outputs."""
    if not in_size:
        return None
    n = min(int(in_size[0]), int(in_size[-1]), max_size)
    n -= n % stride
    return n if n // max(stride, 1) >= 4 else None


def model_alias(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    max_size: int = 32,
    offset: float = 0.5,
    amplitude: float = 0.5,
    phases: int = 4,
    freqs: Sequence[float] = DEFAULT_FREQS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per-site aliasing of ``model`` (its weights as they are, eval mode): every site found by
    :func:`poolstride.surgery.sites` whose module can be run alone is probed with sinusoids in all its input
    channels (the same in each) on a canvas of its input size (capped at ``max_size``), float32, measured only."""
    model = model.eval()
    rows: list[dict[str, Any]] = []
    for s in sites(model, tuple(int(v) for v in input_size)):
        row: dict[str, Any] = {
            "path": s.path, "kind": s.kind, "type": s.type, "op": s.op, "stride": s.stride,
            "in_size": list(s.in_size) if s.in_size else None, "in_channels": s.in_channels,
            "out_channels": s.out_channels, "alias_ratio": None, "note": None,
        }  # fmt: skip
        n = site_size(s.in_size, s.stride, max_size)
        if s.via != "module":
            row["note"] = "a functional call (no module to probe)"
        elif n is None:
            row["note"] = f"input {s.in_size} too small at stride {s.stride} (needs >= 4x4 outputs)"
        else:
            mod = copy.deepcopy(model.get_submodule(s.path)).float().eval()
            try:
                res = analyze_module(
                    mod, n, s.stride, channels=s.in_channels, label=s.path, offset=offset, amplitude=amplitude,
                    phases=phases, freqs=freqs, exact=False, dtype=torch.float32, seed=seed, init="trained",
                )  # fmt: skip
                row.update(res.to_dict())
                row.update(path=s.path, spec=s.op, probe_size=n)
            except PoolstrideError as e:
                row["note"] = str(e)
        rows.append(row)
    return rows


def study_alias(
    study_dir: str | Path, *, max_size: int = 32, max_seeds: int | None = None, **kw: Any
) -> dict[str, Any]:
    """Per-site aliasing of every finished checkpoint of a study (``runs/<slug>/seed<k>/checkpoint.pt``), each
    rebuilt from its variant record, with the mean and std over seeds per variant and site (``max_seeds``: the
    first seeds only; the report uses 1). A model from a file is imported from the directory the study was made
    in (its recorded ``cwd``) when it is not importable from here."""
    d = Path(study_dir)
    try:
        study = read_study(d, require_schema=False)
    except StudyFileError as e:
        raise PoolstrideError(f"{d}: not a study directory (study.json: {e.detail})") from None
    info = study.get("dataset_info") or {}
    size = info.get("input_size")
    num_classes = info.get("num_classes")
    if not size:
        raise PoolstrideError(f"{d}/study.json has no dataset_info.input_size")
    add_study_import_path(study)
    runs: list[dict[str, Any]] = []
    for rec in study.get("variants", []):
        slug = rec.get("slug") or rec["name"]
        seeds = sorted((d / "runs" / slug).glob("seed*"), key=lambda p: (len(p.name), p.name))
        for rdir in seeds[:max_seeds] if max_seeds else seeds:
            ck = rdir / "checkpoint.pt"
            entry: dict[str, Any] = {"variant": rec["name"], "seed": rdir.name[4:], "run": str(rdir)}
            if not ck.exists():
                entry["note"] = "no checkpoint.pt"
                runs.append(entry)
                continue
            try:
                cfg = json.loads((rdir / "config.json").read_text()) if (rdir / "config.json").exists() else {}
                v = Variant.from_dict(cfg.get("variant_record") or rec)
                torch.manual_seed(0)
                model = build_variant(v, num_classes, size).model
                blob = torch.load(ck, map_location="cpu", weights_only=False)
                sd = blob.get("model", blob) if isinstance(blob, dict) else blob
                model.load_state_dict(sd)
                entry["sites"] = model_alias(model, size, max_size=max_size, **kw)
            except PoolstrideError as e:
                entry["note"] = f"{type(e).__name__}: {e}"
            except (RuntimeError, OSError, KeyError, ValueError) as e:
                entry["note"] = f"cannot rebuild or load: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            runs.append(entry)
    return {"study": str(d), "input_size": list(size), "runs": runs, "summary": summarize_study(runs)}


def summarize_study(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std (over seeds) of each (variant, site) alias ratio and shift std."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for r in runs:
        for s in r.get("sites") or []:
            key = (r["variant"], s["path"])
            e = acc.setdefault(key, {"variant": r["variant"], "path": s["path"], "op": s.get("op"), "ar": [], "sh": []})
            if s.get("alias_ratio") is not None:
                e["ar"].append(float(s["alias_ratio"]))
            if s.get("shift_std") is not None:
                e["sh"].append(float(s["shift_std"]))
    out = []
    for e in acc.values():
        ar, sh = np.array(e.pop("ar")), np.array(e.pop("sh"))
        e.update(
            seeds=int(len(ar)),
            alias_ratio=float(ar.mean()) if len(ar) else None,
            alias_ratio_std=float(ar.std(ddof=1)) if len(ar) > 1 else None,
            shift_std=float(sh.mean()) if len(sh) else None,
        )
        out.append(e)
    return out


def variant_consistency(variants: Sequence[dict[str, Any]] | None) -> dict[str, tuple[float | None, float | None]]:
    """Variant name -> (mean shift-consistency, mean circular shift-consistency), in %, from the report data's
    ``variants`` rows (``shift_consistency.mean``, ``shift_consistency_circular.mean``)."""

    def mean(row: dict[str, Any], key: str) -> float | None:
        v = (row.get(key) or {}).get("mean")
        return None if v is None else float(v)

    return {
        str(r["name"]): (mean(r, "shift_consistency"), mean(r, "shift_consistency_circular"))
        for r in variants or []
        if "name" in r
    }


CONSISTENCY_CAPTION = (
    "Beside each site: its variant's shift-consistency over seeds (mean %, the report's metric: the same top-1 "
    "class for an image and a shifted copy) with zero padding and with circular shifts, so the aliasing at each "
    "site and the shift-consistency it is meant to explain sit side by side."
)


def study_markdown(res: dict[str, Any], variants: Sequence[dict[str, Any]] | None = None) -> str:
    """A report section (markdown) for :func:`study_alias`'s result; ``variants`` (the report data's variant
    rows) adds each variant's shift-consistency (:func:`variant_consistency`) beside its sites."""
    sc = variant_consistency(variants)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    head = "| variant | site | operator | seeds | alias ratio | shift std |"
    rule = "|---|---|---|---:|---:|---:|"
    if sc:
        head += " shift-consistency % | circular % |"
        rule += "---:|---:|"
    lines = [
        "## Aliasing at the downsampling sites",
        "",
        "Alias ratio of each site's trained operator (docs/alias.md): mean over the stopband of the squared gain at "
        "the folded frequency over the mean squared passband gain, probed with 0.5 + 0.5 cos sinusoids in every input "
        "channel; 1 = plain subsampling, 0 = no aliasing. Mean (± std over seeds)."
        + (" " + CONSISTENCY_CAPTION if sc else ""),
        "",
        head,
        rule,
    ]
    for e in res["summary"]:
        ar = "-" if e["alias_ratio"] is None else f"{e['alias_ratio']:.3f}"
        if e.get("alias_ratio_std") is not None:
            ar += f" ± {e['alias_ratio_std']:.3f}"
        sh = "-" if e["shift_std"] is None else f"{e['shift_std']:.3f}"
        line = f"| {e['variant']} | `{e['path']}` | {e['op']} | {e['seeds']} | {ar} | {sh} |"
        if sc:
            c, cc = sc.get(e["variant"], (None, None))
            line += f" {pct(c)} | {pct(cc)} |"
        lines.append(line)
    missing = [r for r in res["runs"] if r.get("note")]
    if missing:
        lines += ["", "Runs left out: " + "; ".join(f"{r['variant']} seed {r['seed']} ({r['note']})" for r in missing)]
    return "\n".join(lines) + "\n"


# -- figures -----------------------------------------------------------------------------------------------------------
def _planes(res: AliasResult) -> tuple[np.ndarray, np.ndarray]:
    """(response, alias map): the measured gain over the input frequency plane (NaN where not probed) and the
    energy folded onto each output frequency from the stopband (white input, unit passband gain = 1)."""
    grid, g2 = res.grid, res.g2
    assert grid is not None and g2 is not None
    r = (grid.n - 1) // 2
    resp = np.full((2 * r + 1, 2 * r + 1), np.nan)
    g = np.sqrt(np.maximum(g2, 0.0))
    resp[grid.a + r, grid.b + r] = g
    resp[-grid.a + r, -grid.b + r] = g
    m = grid.m
    amap = np.zeros((m, m))
    st = grid.stopband
    c = m // 2
    np.add.at(amap, (grid.la[st] + c, grid.lb[st] + c), g2[st])
    np.add.at(amap, (fold(-grid.la[st], m) + c, fold(-grid.lb[st], m) + c), g2[st])
    amap[c, c] = np.nan  # DC: not probed
    if m % 2 == 0:  # the output Nyquist row and column: not probed
        amap[0, :] = np.nan
        amap[:, 0] = np.nan
    return resp, amap


def save_figure(res: AliasResult, out_dir: str | Path, name: str | None = None) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.svg``: the 2-D frequency response magnitude and the alias map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or slugify(res.spec)
    resp, amap = _planes(res)
    grid = res.grid
    assert grid is not None
    n, m, nyq = grid.n, grid.m, grid.nyquist
    r = (n - 1) // 2
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6), constrained_layout=True)
    ext = [(-r - 0.5) / n, (r + 0.5) / n, (-r - 0.5) / n, (r + 0.5) / n]
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    vmax = max(1.0, float(np.nanmax(resp)) if np.isfinite(resp).any() else 1.0)
    im0 = axes[0].imshow(resp, extent=ext, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest", origin="lower")
    axes[0].add_patch(Rectangle((-nyq, -nyq), 2 * nyq, 2 * nyq, fill=False, ec="white", ls="--", lw=1.4))
    axes[0].set_title(
        "gain: output amplitude at f (inside the dashed output\n"
        "Nyquist square) or at its alias (outside); grey: not probed",
        fontsize=9,
    )
    axes[0].set_xlabel("horizontal frequency (cycles/px)")
    axes[0].set_ylabel("vertical frequency (cycles/px)")
    fig.colorbar(im0, ax=axes[0], shrink=0.85, label="gain (output / input amplitude)")
    e1 = [(-(m // 2) - 0.5) / n, (m - m // 2 - 0.5) / n, (-(m // 2) - 0.5) / n, (m - m // 2 - 0.5) / n]
    cmap1 = plt.get_cmap("magma").with_extremes(bad="#dddddd")
    top = max(1.0, float(np.nanmax(amap)))
    im1 = axes[1].imshow(amap, extent=e1, cmap=cmap1, vmin=0, vmax=top, interpolation="nearest", origin="lower")
    axes[1].set_title(
        "alias map: stopband energy folded onto each\noutput frequency (white input; 1 = a full alias)", fontsize=9
    )
    axes[1].set_xlabel("output frequency (cycles per input px)")
    fig.colorbar(im1, ax=axes[1], shrink=0.85, label="sum of folded g^2")
    ar = "n/a" if res.alias_ratio is None else f"{res.alias_ratio:.4f}"
    ex = "" if res.exact_alias_ratio is None else f" (exact {res.exact_alias_ratio:.4f})"
    kind = "linear" if res.linear else f"non-linear, input {res.offset:g} + {res.amplitude:g} cos"
    fig.suptitle(f"{res.spec}: alias ratio {ar}{ex}  [{res.size}x{res.size}, stride {res.stride}, {kind}]")
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=110)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def model_document(name: str, input_size: Sequence[int], checkpoint: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The alias document (``alias.json``, ``poolstride alias MODEL --json``) of :func:`model_alias`'s rows."""
    return {"schema": 1, "model": name, "input_size": list(input_size), "checkpoint": checkpoint, "sites": rows}


__all__ = [  # the operator analysis, then the sites of models and studies
    *signal.__all__,
    "CONSISTENCY_CAPTION",
    "model_alias",
    "model_document",
    "save_figure",
    "site_size",
    "study_alias",
    "study_markdown",
    "summarize_study",
    "variant_consistency",
]
