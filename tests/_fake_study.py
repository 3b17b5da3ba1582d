"""Realistic fake study directories (``poolstride.study/1``) for tests, docs and demos of the report.

>>> make_study("/tmp/demo-study")          # 4 variants x 3 seeds, complete   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poolstride.results import schema
from poolstride.results.io import write_json, write_text
from poolstride.results.study import run_dir_of


@dataclass(frozen=True)
class FakeVariant:
    name: str
    downsample: str | None
    acc: float  # true mean accuracy (%)
    shift: float  # true mean shift-consistency (%)
    macs: int
    other_ops: int
    params: int
    latency_ms: float
    slug: str | None = None
    site: dict[str, Any] | None = None  # a per-site variant's study.json "site" record (compare --per-site)
    policy: str | None = None  # its policy text
    accs: tuple[float, ...] | None = None  # exact accuracy per seed (in `seeds` order), instead of acc + noise
    shifts: tuple[float, ...] | None = None  # exact shift-consistency per seed, likewise


DEFAULT_VARIANTS: tuple[FakeVariant, ...] = (
    FakeVariant("max", "max", 71.0, 85.0, 1_234_567, 23_456, 24_346, 1.20),
    FakeVariant("avg", "avg", 70.6, 87.5, 1_234_567, 25_120, 24_346, 1.18),
    FakeVariant("blur(base=max,size=4)", "blur(base=max,size=4)", 71.2, 91.0, 1_271_604, 31_870, 24_346, 1.31, "blur"),
    FakeVariant("conv(k=3)", "conv(k=3)", 73.4, 83.0, 1_901_234, 21_002, 36_634, 1.55, "conv-k3"),
)
LAYERS = ["stem.conv", "stage1.conv", "stage1.down", "stage2.conv", "stage2.down", "stage3.conv", "head.fc"]


def _slug(v: FakeVariant) -> str:
    return v.slug or "".join(c if c.isalnum() else "-" for c in v.name).strip("-")


def _dump(path: Path, obj: Any) -> None:
    """Write as the engine writes (atomic, the same JSON layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


def _record(v: FakeVariant) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": v.name, "model": "tiny", "downsample": v.downsample, "slug": _slug(v)}
    if v.policy is not None:
        rec.update(policy=v.policy, select={"paths": [v.site["path"]]} if v.site else {}, init="auto")
    if v.site is not None:
        rec["site"] = dict(v.site)
    return rec


def make_study(
    study_dir: str | Path,
    *,
    variants: Sequence[FakeVariant] = DEFAULT_VARIANTS,
    seeds: Sequence[int] = (0, 1, 2),
    dataset: str = "textures",
    epochs: int = 8,
    skip: Iterable[tuple[str, int]] = (),
    fail: Iterable[tuple[str, int]] = (),
    dataset_of: dict[tuple[str, int], str] | None = None,
    sites: bool = False,
    erf: bool = False,
    noise: float = 0.4,
    rng_seed: int = 0,
) -> Path:
    """Write a study directory as the study engine does and return its path.

    ``skip``: (variant, seed) pairs without a result (partly finished study); ``fail``: pairs whose run
    failed; ``dataset_of``: per-run dataset override (to build a mixed, invalid directory); ``sites`` /
    ``erf``: also write the optional per-site costs and effective-receptive-field arrays. A variant with a
    ``site`` record makes a per-site study (name the first variant ``default``); ``accs`` / ``shifts`` fix
    its per-seed numbers exactly.
    """
    d = Path(study_dir)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(rng_seed)
    skip_s, fail_s = set(skip), set(fail)
    recipe = {"name": "fast", "epochs": epochs, "batch_size": 128, "optimizer": "sgd", "lr": 0.1}
    study = {
        "schema": schema.STUDY,
        "name": "default",
        "model": "tiny",
        "dataset": dataset,
        "recipe": recipe,
        "variants": [_record(v) for v in variants],
        "seeds": list(seeds),
        "baseline": variants[0].name,
        "created": "2026-11-28T10:00:00Z",
        "poolstride": "0.1.0",
    }
    _dump(d / "study.json", study)
    seed_effect = {s: float(rng.normal(0.0, 0.8)) for s in seeds}  # shared by variants: why pairing helps
    results = []
    for v in variants:
        for k, s in enumerate(seeds):
            run = run_dir_of(d, {"slug": _slug(v)}, s)
            run.mkdir(parents=True, exist_ok=True)
            ds = (dataset_of or {}).get((v.name, s), dataset)
            _dump(
                run / "config.json",
                {
                    "schema": schema.RUNCONFIG,
                    "model": "tiny",
                    "downsample": v.downsample,
                    "dataset": ds,
                    "seed": s,
                    "recipe": recipe,
                    "epochs": epochs,
                    "device": "cpu",
                },
            )
            if (v.name, s) in skip_s:
                continue
            acc = v.acc + seed_effect[s] + float(rng.normal(0.0, noise))
            shift = v.shift + 0.5 * seed_effect[s] + float(rng.normal(0.0, noise))
            if v.accs is not None:
                acc = v.accs[k]
            if v.shifts is not None:
                shift = v.shifts[k]
            failed = (v.name, s) in fail_s
            lines = []
            for e in range(1, epochs + 1):
                frac = 1.0 - math.exp(-e / (epochs / 3))
                if failed and e > epochs // 2:
                    break
                lines.append(
                    json.dumps(
                        {
                            "epoch": e,
                            "train_loss": 2.3 * (1 - frac) + 0.3 + float(rng.normal(0, 0.02)),
                            "train_acc": acc * frac + 4.0,
                            "test_loss": 2.2 * (1 - frac) + 0.8,
                            "test_acc": acc * frac / (1.0 - math.exp(-epochs / (epochs / 3)))
                            + float(rng.normal(0, 0.3)),
                            "lr": 0.1 * 0.5 * (1 + math.cos(math.pi * e / epochs)),
                            "time": 5.0 * e,
                            "grad_norm": 1.7 * (1 - 0.5 * frac),
                        }
                    )
                )
            write_text(run / "metrics.jsonl", "\n".join(lines) + "\n")
            res: dict[str, Any] = {
                "schema": schema.RUN,
                "variant": v.name,
                "seed": s,
                "status": "ok",
                "reason": None,
                "model": "tiny",
                "downsample": v.downsample,
                "dataset": ds,
                "epochs": epochs,
                "acc": round(acc, 2),
                "loss": round(0.8 + (75 - acc) / 40, 4),
                "shift_consistency": round(shift, 2),
                "shift_consistency_circular": round(min(99.0, shift + 3), 2),
                "shift": {"max_shift": 4, "padding": "reflect", "pairs": 2},
                "params": v.params,
                "macs": v.macs,
                "other_ops": v.other_ops,
                "activation_bytes": 345_678,
                "latency_ms": round(v.latency_ms * (1 + float(rng.normal(0, 0.02))), 4),
                "train_time_s": round(40.0 * v.latency_ms, 2),
                "images_per_s": round(3200 / v.latency_ms, 1),
                "device": "cpu",
                "gradflow": {
                    "layers": LAYERS,
                    "grad_norm": [
                        round(0.05 * (2.0 if "conv" in v.name else 1.3) ** i * (1 + float(rng.normal(0, 0.05))), 5)
                        for i in range(len(LAYERS))
                    ],
                },
                "finished": "2026-11-28T10:03:00Z",
            }
            if sites:
                res["sites"] = [
                    {
                        "path": f"stage{i}.down",
                        "op": v.downsample,
                        "macs": int(v.macs * 0.02 * i) if "conv" in v.name else 0,
                        "other_ops": v.other_ops // 4 * i,
                        "params": 0 if "conv" not in v.name else 4096 * i,
                    }
                    for i in (1, 2, 3)
                ]
            if erf:
                yy, xx = np.mgrid[-16:17, -16:17]
                width = 4.0 + (2.0 if "blur" in v.name else 0.0) + 0.2 * s
                np.save(run / "erf.npy", np.exp(-(xx**2 + yy**2) / (2 * width**2)) + rng.uniform(0, 0.05, xx.shape))
                res["erf"] = "erf.npy"
            if failed:
                res.update(
                    {
                        "status": "failed",
                        "reason": f"loss became NaN at epoch {epochs // 2 + 1}",
                        "acc": None,
                        "loss": None,
                        "shift_consistency": None,
                        "shift_consistency_circular": None,
                        "latency_ms": None,
                        "gradflow": None,
                    }
                )
            _dump(run / "result.json", res)
            results.append(res)
    _dump(
        d / "summary.json",
        {
            "schema": schema.SUMMARY,
            "study": study,
            "complete": not skip_s,
            "runs_done": len(results),
            "runs_total": len(variants) * len(seeds),
            "variants": [],
            "runs": results,
        },
    )
    return d
