"""Save a converted model as weights + a recipe, and rebuild it without pickled code.

The file written by :func:`save_converted` is a plain ``torch.save`` of
``{"format", "recipe", "state_dict"}`` where the recipe holds only JSON types: the model string (as
understood by :func:`poolstride.resolve.resolve`, or a built-in model name), its keyword arguments,
the policy with its selectors and init mode, and the input size of the conversion. Loading is
``torch.load(path, weights_only=True)`` plus :func:`rebuild`: build the model from its string, convert it
again with the same policy (conversion is deterministic), load the weights with ``strict=True``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, PoolstrideError
from ..resolve import resolve
from .convert import FORMAT, Conversion, convert_detailed
from .policy import Policy


def _build_base(recipe: dict[str, Any]) -> nn.Module:
    name = recipe.get("model")
    if not name:
        raise ModelError("the recipe names no model; pass builder= to rebuild it")
    kwargs = recipe.get("model_kwargs") or {}
    return resolve(name, kwargs).model


def rebuild(recipe: dict[str, Any], builder: Callable[[], nn.Module] | None = None) -> nn.Module:
    """The converted model of ``recipe`` with freshly initialised weights (load a state dict into it)."""
    if recipe.get("format") != FORMAT:
        raise PoolstrideError(
            f"not a poolstride converted-model recipe (format {recipe.get('format')!r}, want {FORMAT})"
        )
    base = builder() if builder is not None else _build_base(recipe)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conv = convert_detailed(
            base, Policy.from_dict(recipe), tuple(recipe["input_size"]), strict=bool(recipe.get("strict", True))
        )
    return conv.model


def save_converted(
    conv: Conversion, path: str | Path, model: str | None = None, model_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``conv``'s weights and recipe to ``path`` (and the recipe alone to ``path`` + ``.json``)."""
    recipe = conv.recipe(model, model_kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in conv.model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "recipe": recipe, "state_dict": state}, tmp)
    tmp.replace(path)
    Path(str(path) + ".json").write_text(json.dumps(recipe, indent=2) + "\n")
    return recipe


def load_converted(path: str | Path, builder: Callable[[], nn.Module] | None = None) -> nn.Module:
    """Load a model written by :func:`save_converted` (``torch.load(weights_only=True)`` + the recipe)."""
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PoolstrideError(f"no such file: {path}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise PoolstrideError(f"{path} is not a poolstride converted model (format {FORMAT})")
    model = rebuild(blob["recipe"], builder)
    model.load_state_dict(blob["state_dict"], strict=True)
    return model


__all__ = ["FORMAT", "load_converted", "rebuild", "save_converted"]
