"""The JSON documents of ``poolstride explain`` and ``poolstride gradflow`` (``"schema": 1`` where versioned), built
next to the analyses they describe so that a notebook gets the same data the CLI prints.

``poolstride inspect --json`` is :meth:`poolstride.analysis.core.Inspection.to_dict`; ``poolstride cost --json`` is
:meth:`poolstride.surgery.cost.CostTable.to_json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .explain import explain_ops, explain_stem, explain_vgg
from .gradflow import ERF, GradFlow


def document_head(model: str, input_size: Sequence[int]) -> dict[str, Any]:
    """The keys every versioned analysis document starts with: ``schema``, ``model``, ``input_size``."""
    return {"schema": 1, "model": model, "input_size": list(input_size)}


#: the worked examples ``explain`` can show beyond the operator walk-through
CLAIMS = ("stem", "vgg")


def explain_parts(what: str | None) -> list[str]:
    """The parts ``explain WHAT`` shows, in order: ``"ops"`` (the operator walk-through; WHAT is empty, ``all``
    or a list of operator specs), ``"stem"``, ``"vgg"``."""
    w = (what or "").strip().lower()
    if w == "all":
        return ["ops", *CLAIMS]
    return [w] if w in CLAIMS else ["ops"]


def explain_document(what: str | None, size: tuple[int, int] = (4, 4)) -> dict[str, Any]:
    """``{"ops": ..., "stem": ..., "vgg": ...}`` (the parts :func:`explain_parts` names): the operator walk-through
    of the specs in ``what`` (the default operators when it is empty or ``all``) on a ``size`` map, and the
    quantitative claims."""
    parts = explain_parts(what)
    w = (what or "").strip().lower()
    out: dict[str, Any] = {}
    if "ops" in parts:
        out["ops"] = explain_ops(None if w in ("", "all") else what, size)
    if "stem" in parts:
        out["stem"] = explain_stem()
    if "vgg" in parts:
        out["vgg"] = explain_vgg()
    return out


@dataclass
class GradflowDocument:
    """One ``gradflow`` run: the model, the batch it saw, the gradient flow and (when asked) the effective
    receptive field."""

    model: str
    input_size: Sequence[int]
    batch: int
    seed: int
    checkpoint: str | None
    gradflow: GradFlow
    erf: ERF | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``poolstride gradflow --json`` document (``"schema": 1``)."""
        return {
            **document_head(self.model, self.input_size),
            "batch": self.batch,
            "seed": self.seed,
            "checkpoint": self.checkpoint,
            "gradflow": self.gradflow.to_dict(),
            "erf": self.erf.to_dict() if self.erf is not None else None,
        }


__all__ = ["CLAIMS", "GradflowDocument", "document_head", "explain_document", "explain_parts"]
