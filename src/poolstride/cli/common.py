"""Shared CLI objects: the typer app, rich consoles, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..errors import ModelError, PoolstrideError
from ..extras import first_line

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    """Write ``obj`` as JSON to stdout (plain, no colour, so it can be piped)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def parse_input_size(text: str) -> tuple[int, int, int]:
    """``"3x224x224"`` -> (3, 224, 224); also accepts ``"224"`` (3 channels, square) and ``"HxW"``."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = [3, parts[0], parts[0]]
    elif len(parts) == 2:
        parts = [3, *parts]
    if len(parts) != 3 or min(parts) < 1:
        raise PoolstrideError(f"bad --input {text!r}; expected CxHxW such as 3x224x224 (or HxW, or a single size)")
    return parts[0], parts[1], parts[2]


# ---------------------------------------------------------------------------------------- user input, checked
# The commands pass what the user typed through these, so that a bad value is a one-line PoolstrideError at the
# source (main() prints it and exits 2), never a traceback from deep inside torch or matplotlib.

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg", ".tif", ".tiff", ".webp")


def _writable_ancestor(start: Path, path: str | Path, flag: str) -> None:
    """The nearest existing ancestor of ``start`` (itself included) must be a writable directory."""
    parent = start
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise PoolstrideError(f"{flag} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PoolstrideError(f"{flag} {path}: directory {parent} is not writable")


def check_out_file(path: str | Path, flag: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """Check, before any work, that ``path`` can be written as a file: not a directory, its nearest existing
    ancestor a writable directory (missing folders below it are created when the file is written), and its
    suffix one of ``suffixes`` when given. Nothing is created here."""
    p = Path(path)
    if not str(path).strip():
        raise PoolstrideError(f"{flag}: empty path")
    if p.is_dir():
        raise PoolstrideError(f"{flag} {path}: is a directory; give a file name")
    if suffixes and p.suffix.lower() not in suffixes:
        raise PoolstrideError(f"{flag} {path}: give a file name ending in {', '.join(suffixes)}")
    _writable_ancestor(p.parent, path, flag)
    return p


def check_out_dir(path: str | Path, flag: str) -> Path:
    """Check, before any work, that ``path`` can be (or is) a directory to write into: not a file, its nearest
    existing ancestor a writable directory. Nothing is created here."""
    p = Path(path)
    if not str(path).strip():
        raise PoolstrideError(f"{flag}: empty path")
    if p.exists() and not p.is_dir():
        raise PoolstrideError(f"{flag} {path}: is a file, not a directory")
    _writable_ancestor(p, path, flag)
    return p


def _torch_load_reason(e: BaseException) -> str:
    """The useful part of torch.load's (long, multi-paragraph) error."""
    if isinstance(e, EOFError):
        return "the file is empty or truncated"
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    text = str(e)
    for marker in ("Unsupported global:", "WeightsUnpickler error:", "failed reading zip archive:"):
        i = text.find(marker)
        if i >= 0:  # the reason is on the marker's line or on the next non-empty one
            rest = [line.strip() for line in text[i + len(marker) :].splitlines() if line.strip()]
            why = rest[0].split(". ")[0].rstrip(".") if rest else ""
            return f"{marker.rstrip(':')}: {why}"[:160] if why else marker.rstrip(":")
    return f"{type(e).__name__}: {first_line(e, 160)}"


def _what(flag: str) -> str:
    """'--checkpoint' -> 'checkpoint': the message says what it could not load."""
    return flag.lstrip("-")


def torch_load_error(path: str | Path, flag: str, e: BaseException) -> PoolstrideError:
    """The one-line error for a file torch.load cannot read."""
    why = _torch_load_reason(e)
    if why.startswith("Unsupported global"):  # a real torch.save file, of a whole object rather than a state_dict
        return PoolstrideError(
            f"cannot load {_what(flag)} {path}: it holds Python objects, not unpickled for safety ({why}); save "
            "model.state_dict() instead"
        )
    return PoolstrideError(
        f"cannot load {_what(flag)} {path}: not a readable state_dict ({why}); expected a file written by "
        "torch.save(model.state_dict(), path)"
    )


# what torch.load raises on a file that is not what torch.save writes (the unpickler or the zip reader)
TORCH_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError, KeyError, AttributeError,
)  # fmt: skip


def load_checkpoint(path: str | Path, flag: str) -> Mapping[str, Any]:
    """``torch.load(path, weights_only=True)``, checked: a missing, empty, corrupted or non-PyTorch file, or one
    that holds no dict, is a :class:`PoolstrideError` naming the file (``flag``: the option that gave it)."""
    import torch

    p = Path(path)
    if not p.exists():
        raise PoolstrideError(f"cannot load {_what(flag)} {path}: no such file")
    if p.is_dir():
        raise PoolstrideError(f"cannot load {_what(flag)} {path}: it is a directory, not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as e:
        raise torch_load_error(path, flag, e) from None
    if not isinstance(state, Mapping):
        raise PoolstrideError(
            f"cannot load {_what(flag)} {path}: it holds a {type(state).__name__}, not a state_dict (a dict of tensors)"
        )
    return state


def forward_error(model: Any, size: tuple[int, int, int], batch: int = 1, train: bool = False) -> str | None:
    """Run ``model`` once on a random ``batch x size`` input (no gradients; its mode and buffers restored) and
    return the first line of the error it raises, or None when it runs. Used to tell a user's input that does
    not fit the model (the plain forward pass fails too) from a poolstride bug (it does not)."""
    import torch

    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    was = model.training
    model.train(train)
    try:
        x = torch.randn(batch, *size, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(x)
    except PoolstrideError as e:
        return first_line(e, 300)
    except Exception as e:  # noqa: BLE001 - the user's model on the user's input: any failure is the answer
        return f"{type(e).__name__}: {first_line(e, 300)}"
    finally:
        model.train(was)
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)
    return None


@contextlib.contextmanager
def input_must_fit(
    model: Any,
    size: tuple[int, int, int],
    name: str,
    *,
    batch: int = 1,
    train: bool = False,
    natural: tuple[int, int, int] | None = None,
) -> Iterator[None]:
    """Run the block (an analysis of ``model`` on ``size`` inputs); if it fails with anything but a
    PoolstrideError, probe a plain forward pass: when that fails too, the input does not fit the model (wrong
    channel count, map too small...) and the failure becomes a one-line :class:`ModelError`; when it runs, the
    failure is poolstride's own and propagates unchanged (a traceback, to be reported)."""
    try:
        yield
    except PoolstrideError:
        raise
    except Exception as e:
        why = forward_error(model, size, batch, train)
        if why is None:
            raise
        hint = f"; the model's own input is {'x'.join(map(str, natural))}" if natural and natural != size else ""
        raise ModelError(f"{name} cannot run on a {'x'.join(map(str, size))} input (--input): {why}{hint}") from e


MODEL_HELP = "Model: built-in name, torchvision:NAME, timm:NAME, package.module:callable."


def model_argument(help: str = MODEL_HELP) -> Any:
    """The MODEL argument of the commands that take any model (cost, gradflow, convert)."""
    return typer.Argument(..., help=help)


def examples(lines: list[str]) -> str:
    """A command's help epilog: real examples, one per line (rich keeps blank-line-separated lines)."""
    return "Examples:\n\n" + "\n\n".join(f"  {x}" for x in lines)


__all__ = [
    "app",
    "check_out_dir",
    "check_out_file",
    "console",
    "err_console",
    "forward_error",
    "input_must_fit",
    "load_checkpoint",
    "parse_input_size",
    "print_json",
    "torch_load_error",
    "typer",
]
