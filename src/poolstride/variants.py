"""Variants: the one way an arm of a study (or a row of ``cost``, or a ``convert``) is named, built and rebuilt.

A variant is (model, transformation, options). The model is any MODEL string that ``inspect`` accepts (a
built-in name, ``torchvision:NAME``, ``timm:NAME``, ``package.module:callable``) or, from Python, an
``nn.Module`` instance or a factory. The transformation is one entry of the ``--variants`` grammar::

    entry     := [NAME "="] transform
    transform := "default"                       the model as given
               | OPSPEC                          an operator at every site: max, conv(k=3), blur(base=max,size=3)
               | BUILTIN ":" VARIANT             a structural variant of a built-in family: allcnn-c:strided
               | POLICY ["[" selectors "]"]      a surgery policy: pool->conv(k=3), shortcut->avg+1x1, ...
    selectors := key=value ("," key=value)*      skip=, stage=, path=, exclude= (repeatable), min_channels=, init=

An OPSPEC on a built-in model sets the operator of every pool and strided-conv site (the family's own
``downsample=`` knob). On any other model it means the same thing, written as a surgery policy: every pool
site becomes the operator, and every strided conv on the main path (not the stem, not a shortcut) runs at
stride 1 followed by the operator when the operator keeps channels (``conv->conv(s=1)+OP``, as the built-in
families do), or is replaced by it when the operator changes channels (``conv->OP``). The expansion is
recorded and printed once.

:func:`parse_variants` is the parser every command uses; :func:`build` turns a :class:`Variant` into a module
for a dataset (classes, channels, input size), recording every adaptation it made (classifier head, input
channels, weights); a run is rebuilt from ``Variant.to_dict()`` alone, bit-identically for the same seed.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect as _inspect
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import models
from .errors import ModelError, PoolstrideError, SpecError
from .ops import get_info
from .resolve import call_factory, check_model_string, cwd_importable, resolve
from .spec import parse, split_list
from .surgery import VALID_FORMS, Conversion, Policy, analyze, convert_detailed, parse_policy, sites
from .surgery.find import eval_mode, first_tensor, probe_input
from .surgery.recipe import FORMAT, rebuild

#: the prefix of a MODEL string that names a Python object handed to the API (not rebuildable from the CLI)
PYTHON_PREFIX = "python:"
DEFAULT = "default"
SELECTOR_KEYS = ("skip", "stage", "path", "exclude", "min_channels", "init")


class VariantError(PoolstrideError):
    """A variant that cannot be parsed, built or rebuilt (the message says which and why)."""


# ------------------------------------------------------------------------------------------------ parsing
def slugify(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.").lower()
    return s or "variant"


@dataclass(frozen=True)
class Variant:
    """One arm: a model plus one transformation (see the module doc). ``to_dict`` is the record a run is
    rebuilt from; ``obj`` (a Python instance or factory) is never serialised."""

    name: str
    model: str
    downsample: str | None = None  # op at every site of a built-in model
    slug: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: str | None = None  # canonical surgery policy text
    select: dict[str, Any] | None = None  # policy selectors (surgery.Selector.to_dict) and init
    init: str = "auto"  # policy init: auto (preserve when starting from weights, else default), default, preserve
    site: dict[str, Any] | None = None  # per-site variant: the one site it changes
    expanded_from: str | None = None  # a bare operator spec that became ``policy`` on a non-built-in model
    weights: dict[str, Any] | None = None  # {"path", "sha256"}
    obj: Any = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        if self.policy is not None:
            return "policy"
        if self.downsample is not None:
            return "op"
        return "structural" if ":" in self.model and is_builtin(self.model) and self.name != DEFAULT else DEFAULT

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "model": self.model, "downsample": self.downsample, "slug": self.slug}
        # optional keys only when set, so that the records of existing studies keep their form
        if self.model_kwargs:
            d["model_kwargs"] = dict(self.model_kwargs)
        if self.policy is not None:
            d["policy"] = self.policy
            d["select"] = dict(self.select or {})
            d["init"] = self.init
        if self.expanded_from is not None:
            d["expanded_from"] = self.expanded_from
        if self.site is not None:
            d["site"] = dict(self.site)
        if self.weights is not None:
            d["weights"] = dict(self.weights)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], obj: Any = None) -> Variant:
        return cls(
            name=d["name"], model=d["model"], downsample=d.get("downsample"), slug=d.get("slug") or slugify(d["name"]),
            model_kwargs=dict(d.get("model_kwargs") or {}), policy=d.get("policy"), select=d.get("select"),
            init=d.get("init", "auto"), site=d.get("site"), expanded_from=d.get("expanded_from"),
            weights=d.get("weights"), obj=obj,
        )  # fmt: skip

    def policy_obj(self) -> Policy | None:
        if self.policy is None:
            return None
        sel = dict(self.select or {})
        return parse_policy(self.policy, init="default" if self.init == "auto" else self.init, **sel)


def is_builtin(model: str) -> bool:
    return model.split(":", 1)[0].strip().lower() in models.names()


_NAMED = re.compile(r"^\s*([A-Za-z0-9_.+\- ]+?)\s*=(?!>)(.*)$", re.S)


def _selectors(text: str) -> tuple[dict[str, Any], str]:
    """``skip=stem,path=layer2.*,init=preserve`` -> (parse_policy keyword arguments, canonical text)."""
    acc: dict[str, list[str]] = {}
    for item in split_list(text):
        k, eq, v = item.partition("=")
        k, v = k.strip().lower(), v.strip()
        k = {"stages": "stage", "paths": "path"}.get(k, k)
        if not eq or not v or k not in SELECTOR_KEYS:
            raise SpecError(f"bad selector {item!r}; valid: {', '.join(f'{s}=...' for s in SELECTOR_KEYS)}")
        acc.setdefault(k, []).append(v)
    kw: dict[str, Any] = {}
    for k, vals in acc.items():
        if k in ("min_channels", "init") and len(vals) > 1:
            raise SpecError(f"selector {k} given twice")
    if "skip" in acc:
        kw["skip"] = acc["skip"]
    if "stage" in acc:
        kw["stages"] = ",".join(acc["stage"])
    if "path" in acc:
        kw["paths"] = acc["path"]
    if "exclude" in acc:
        kw["exclude"] = acc["exclude"]
    if "min_channels" in acc:
        kw["min_channels"] = acc["min_channels"][0]
    if "init" in acc:
        kw["init"] = acc["init"][0]
    canon = ",".join(f"{k}={v}" for k in SELECTOR_KEYS for v in acc.get(k, []))
    return kw, canon


def expand_op(spec: Any) -> str:
    """The surgery policy that puts operator ``spec`` at every pool and main-path strided conv (module doc)."""
    s = parse(spec)
    if get_info(s.name).cls.can_change_channels(s):
        return f"pool->{s}; conv->{s}"
    post = str(s)
    if s.name == "blur" and "base=" not in post:  # a bare blur behind a stride-1 conv keeps blur's own base
        post = f"blur(base={s.kwargs['base']}" + ("," + post[len("blur(") :] if "(" in post else ")")
    return f"pool->{s}; conv->conv(s=1)+{post}"


def _normalize(text: str) -> str:
    return re.sub(r"\s*(->|\+|;|,|=|\(|\)|\[|\])\s*", r"\1", text.strip())


def parse_entry(entry: str, model: str, model_kwargs: Mapping[str, Any] | None = None) -> Variant:
    """One entry of the grammar (module doc) for ``model``; raises SpecError/ModelError with what is valid."""
    name = None
    m = _NAMED.match(entry)
    if m and not any(t in m.group(1) for t in ("(", "[", "->")):  # NAME=ENTRY, not an argument of an entry
        name, entry = m.group(1).strip(), m.group(2).strip()
        if not name or not entry:
            raise SpecError(f"bad variant {entry!r}; expected NAME=ENTRY")
    text = _normalize(entry)
    builtin = is_builtin(model)
    kw = dict(model_kwargs or {})
    if text.lower() in (DEFAULT, "base", "as-is"):  # base / as-is: the cost command's older spelling
        v = Variant(text.lower(), model, model_kwargs=kw)
    elif "->" in text:
        sel_text = ""
        pol_text = text
        if text.endswith("]") and "[" in text:
            pol_text, _, rest = text.partition("[")
            sel_text = rest[:-1]
        sel_kw, sel_canon = _selectors(sel_text) if sel_text else ({}, "")
        pol = parse_policy(pol_text, **sel_kw)
        d = pol.select.to_dict()
        v = Variant(text, model, model_kwargs=kw, policy=pol.text, select=d, init=sel_kw.get("init", "auto"))
    elif ":" in text and "(" not in text and text.split(":", 1)[0].lower() in models.names():
        models.get_entry(text)
        if text.split(":", 1)[0].lower() != model.split(":", 1)[0].strip().lower():
            # a structural variant of another family is a different model: allowed, as in allcnn's Table 3
            pass
        v = Variant(text.lower(), text.lower(), model_kwargs=kw)
    else:
        try:
            spec = parse(text)
        except SpecError as e:
            if "unknown operator" not in str(e):
                raise
            raise SpecError(
                f"{e}; or 'default', or a surgery policy: valid policy forms: {'; '.join(VALID_FORMS)}"
            ) from None
        if builtin:
            v = Variant(text, model, downsample=str(spec), model_kwargs=kw)
        else:
            v = Variant(text, model, model_kwargs=kw, policy=expand_op(spec), select={}, expanded_from=str(spec))
            v = replace(v, select=_policy_select(v))
    name = name or v.name
    return replace(v, name=name, slug=slugify(name))


def _policy_select(v: Variant) -> dict[str, Any]:
    return parse_policy(v.policy or "", skip=["stem", "shortcut"] if v.expanded_from else None).select.to_dict()


def parse_variants(
    model: str, variants: str | Sequence[str] | None, model_kwargs: Mapping[str, Any] | None = None
) -> list[Variant]:
    """Every entry of ``variants`` (a comma list or a sequence) for ``model``; names are unique, slugs too."""
    entries = split_list(variants) if isinstance(variants, str) else list(variants or [])
    if not entries:
        raise SpecError("no variants given")
    out = [parse_entry(e, model, model_kwargs) for e in entries]
    return unique(out)


def _identity(v: Variant) -> str:
    d = {k: x for k, x in v.to_dict().items() if k not in ("name", "slug")}
    return json.dumps(d, sort_keys=True, default=str)


def unique(out: list[Variant]) -> list[Variant]:
    """Check that names and meanings are distinct (``max`` and ``max(k=2)`` are one variant) and number
    clashing slugs."""
    names = [v.name for v in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"variant {dup[0]!r} is given twice; name duplicates as NAME=ENTRY")
    seen: dict[str, str] = {}
    for v in out:
        key = _identity(v)
        if key in seen:
            raise SpecError(f"variants {seen[key]!r} and {v.name!r} are the same variant; give it once")
        seen[key] = v.name
    slugs: dict[str, int] = {}
    fixed = []
    for v in out:  # distinct names can still share a slug ("a.b" / "a-b"): number them
        k = slugs.get(v.slug, 0)
        slugs[v.slug] = k + 1
        fixed.append(v if k == 0 else replace(v, slug=f"{v.slug}-{k + 1}"))
    return fixed


def describe(v: Variant) -> str | None:
    """The one line that says what a variant's text meant, when it is not obvious (a bare op expanded)."""
    if v.expanded_from:
        return (
            f"{v.name}: '{v.expanded_from}' on {v.model} means every pool site and every strided conv on the main "
            f"path (not the stem, not shortcuts): policy '{v.policy}'"
        )
    return None


# ------------------------------------------------------------------------------------------------ models
@dataclass
class Built:
    """A variant built for a dataset: the module, and what was done to make it fit (recorded and printed)."""

    model: nn.Module
    input_size: tuple[int, int, int]
    adaptations: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    conversion: Any = None


class RepeatChannels(nn.Module):
    """Grey input repeated to the channels a pretrained-style stem expects (``x.expand``: no copy, no weights)."""

    def __init__(self, model: nn.Module, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x.expand(-1, self.channels, -1, -1))


def python_model_name(obj: Any) -> str:
    """The MODEL string of a Python object: ``module:qualname`` for an importable factory or class (so the
    study is rebuildable from the command line), ``python:ClassName`` for an instance."""
    if isinstance(obj, nn.Module):
        return f"{PYTHON_PREFIX}{type(obj).__name__}"
    mod, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if mod and qual and mod != "__main__" and "<" not in qual:
        try:
            found: Any = importlib.import_module(mod)
            for part in qual.split("."):
                found = getattr(found, part)
            if found is obj:
                return f"{mod}:{qual}"
        except (ImportError, AttributeError):
            pass
    return f"{PYTHON_PREFIX}{qual or type(obj).__name__}"


def _accepts(fn: Any, name: str) -> bool:
    try:
        sig = _inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return name in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


Base = tuple[nn.Module, tuple[int, int, int], list[str], dict[str, Any]]


def _base(v: Variant, num_classes: int | None, in_channels: int | None, use_num_classes: bool) -> Base:
    """The model before head/channel/weights adaptation, and how it was made."""
    notes: list[str] = []
    rec: dict[str, Any] = {}
    kw = dict(v.model_kwargs)
    if is_builtin(v.model):
        if num_classes is not None:
            kw.setdefault("num_classes", num_classes)
        if in_channels is not None:
            kw.setdefault("in_channels", in_channels)
        try:
            m = models.build(v.model, downsample=v.downsample, **kw)
        except PoolstrideError:
            raise
        except (TypeError, ValueError, RuntimeError) as e:
            raise ModelError(f"{v.model}: cannot build: {e}") from None
        return m, models.get_entry(v.model).input_size, notes, {"source": "builtin"}
    obj = v.obj
    if obj is None and v.model.startswith(PYTHON_PREFIX):
        raise VariantError(
            f"{v.model} names a Python object passed to compare(); it cannot be rebuilt in another process or "
            "from the command line (resume it from Python, or give the model as package.module:callable)"
        )
    if obj is not None:
        if isinstance(obj, nn.Module):
            m = copy.deepcopy(obj)
            n_reset = _reinit(m)
            rec.update(source="instance", reinit=n_reset)
            notes.append(f"the nn.Module instance is deep-copied per run and re-initialised per seed "
                         f"(reset_parameters() on {n_reset} modules)")  # fmt: skip
            return m, tuple(getattr(obj, "input_size", (3, 224, 224))), notes, rec  # type: ignore[return-value]
        if not callable(obj):
            raise ModelError(f"model must be a MODEL string, an nn.Module or a factory, not {type(obj).__name__}")
        if use_num_classes and num_classes is not None and _accepts(obj, "num_classes") and "num_classes" not in kw:
            kw["num_classes"] = num_classes
            rec["num_classes_arg"] = num_classes
        m = call_factory(obj, kw, v.model, "the factory")
        rec["source"] = "factory"
        return m, tuple(getattr(m, "input_size", (3, 224, 224))), notes, rec  # type: ignore[return-value]
    if use_num_classes and num_classes is not None and "num_classes" not in kw and _ctor_accepts_classes(v.model):
        kw["num_classes"] = num_classes
        rec["num_classes_arg"] = num_classes
    r = resolve(v.model, kw)
    rec["source"] = r.source
    return r.model, r.input_size, notes, rec


def natural_classes(model: str) -> int:
    return models.get_entry(model).num_classes


def _ctor_accepts_classes(model: str) -> bool:
    """Whether the constructor behind a MODEL string takes ``num_classes=`` (torchvision, timm: yes)."""
    head, _, tail = model.partition(":")
    if head in ("torchvision", "timm"):
        return True
    cwd_importable()
    try:
        obj: Any = importlib.import_module(head)
        for part in tail.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return False
    if isinstance(obj, nn.Module):
        return False
    return _accepts(obj, "num_classes")


def _reinit(m: nn.Module) -> int:
    n = 0
    for mod in m.modules():
        fn = getattr(mod, "reset_parameters", None)
        if callable(fn):
            fn()
            n += 1
    return n


def _forward(m: nn.Module, size: Sequence[int]) -> torch.Tensor:
    with eval_mode(m), torch.no_grad():
        out = m(probe_input(m, size))
    t = first_tensor(out)
    if t is None:
        raise ModelError("the model's forward returned no tensor")
    return t


def _run_at(m: nn.Module, size: Sequence[int], what: str) -> torch.Tensor:
    try:
        return _forward(m, size)
    except PoolstrideError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"{what} cannot run on {'x'.join(map(str, size))} input: {msg[:200]}") from None


def find_head(m: nn.Module, out_dim: int) -> str | None:
    """The module path of the classifier: the last ``nn.Linear`` (or 1x1 ``nn.Conv2d``) with ``out_dim`` outputs."""
    last = None
    for name, mod in m.named_modules():
        if (isinstance(mod, nn.Linear) and mod.out_features == out_dim) or (
            isinstance(mod, nn.Conv2d) and mod.out_channels == out_dim and mod.kernel_size == (1, 1)
        ):
            last = name
    return last


def _set(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _adapt_head(
    m: nn.Module, model: str, size: Sequence[int], num_classes: int
) -> tuple[nn.Module, str | None, str | None]:
    """(model, head path, what was done or None) so that the output has ``num_classes`` logits."""
    out = _run_at(m, size, model)
    if out.dim() != 2:
        raise ModelError(f"{model}: the output has shape {tuple(out.shape)}; a classifier's is (batch, classes)")
    k = int(out.shape[1])
    if k == num_classes:
        return m, find_head(m, k), None
    if hasattr(m, "reset_classifier") and hasattr(m, "get_classifier"):  # timm
        timm_model: Any = m
        timm_model.reset_classifier(num_classes)
        cls = timm_model.get_classifier()
        head = next((n for n, mod in m.named_modules() if mod is cls), None)
        done = f"head: timm reset_classifier({num_classes}) ({k} -> {num_classes} classes)"
    else:
        head = find_head(m, k)
        if head is None:
            raise ModelError(
                f"{model}: cannot find the classifier head: the output has {k} classes and no nn.Linear (or 1x1 conv) "
                f"gives {k} outputs; build it with num_classes={num_classes} (a factory taking num_classes=) instead"
            )
        old = m.get_submodule(head)
        dev = next(old.parameters()).device
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=dev)
        else:
            assert isinstance(old, nn.Conv2d)
            new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None, device=dev)
        _set(m, head, new)
        done = f"head: {head} replaced ({type(old).__name__}, {k} -> {num_classes} classes)"
    k2 = int(_run_at(m, size, model).shape[1])
    if k2 != num_classes:
        raise ModelError(f"{model}: replacing the head gave {k2} outputs, not {num_classes}; the head cannot be found")
    return m, head, done


def first_conv(m: nn.Module) -> tuple[str, nn.Conv2d] | None:
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            return name, mod
    return None


def _adapt_conv_channels(m: nn.Module, path: str, conv: nn.Conv2d, c: int, pretrained: bool) -> str:
    """Replace the first conv by one taking ``c`` channels; with loaded weights, the old kernel is spread over
    the new channels (channel i takes old channel i mod C_old, scaled by C_old / c) so that the response to an
    input whose channels are equal stays the same."""
    if conv.groups != 1:
        raise ModelError(f"the first conv {path} is grouped ({conv.groups} groups); cannot adapt its input channels")
    new = nn.Conv2d(
        c, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None, padding_mode=conv.padding_mode, device=conv.weight.device,
    )  # fmt: skip
    how = "fresh init"
    if pretrained:
        with torch.no_grad():
            idx = torch.arange(c) % conv.in_channels
            new.weight.copy_(conv.weight[:, idx] * (conv.in_channels / c))
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
        how = "weights spread over the new channels"
    _set(m, path, new)
    return f"input: first conv {path} adapted {conv.in_channels} -> {c} channels ({how})"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_record(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise VariantError(f"--weights {path}: no such file")
    return {"path": str(p.resolve()), "sha256": sha256_file(p)}


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state_dict, converted-model recipe or None) from a state_dict file, a checkpoint holding one
    (``state_dict`` / ``model`` key), or a ``poolstride convert --out`` file. Loaded with weights_only."""
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VariantError(f"--weights {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VariantError(f"--weights {path} is not a readable state_dict ({type(e).__name__}: {msg[:120]})") from None
    recipe = None
    if isinstance(blob, dict) and blob.get("format") == FORMAT:
        recipe = blob.get("recipe")
        blob = blob.get("state_dict")
    elif isinstance(blob, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(blob.get(key), dict):
                blob = blob[key]
                break
    if not isinstance(blob, dict) or not blob or not all(isinstance(t, torch.Tensor) for t in blob.values()):
        raise VariantError(f"--weights {path} holds no state_dict (a dict of tensors)")
    sd = {k.removeprefix("module.").removeprefix("_orig_mod."): t for k, t in blob.items()}
    return sd, recipe


def load_weights(m: nn.Module, sd: Mapping[str, torch.Tensor], head: str | None, what: str) -> list[str]:
    """Load ``sd`` into ``m``: every key must match in name and shape, except the classifier head's, which is
    left as built when its shape differs (another number of classes). Returns notes."""
    own = m.state_dict()
    head_keys = {k for k in own if head and (k == head or k.startswith(head + "."))}
    missing = [k for k in own if k not in sd and k not in head_keys]
    unexpected = [k for k in sd if k not in own]
    bad_shape = [k for k in own if k in sd and sd[k].shape != own[k].shape and k not in head_keys]
    if missing or unexpected or bad_shape:
        parts = []
        if bad_shape:
            parts.append("shape differs: " + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
                                                       for k in bad_shape[:3]))  # fmt: skip
        if missing:
            parts.append("missing: " + ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append("unexpected: " + ", ".join(unexpected[:3]) + (" ..." if len(unexpected) > 3 else ""))
        raise VariantError(f"--weights {what} do not fit this model (another architecture?): " + "; ".join(parts))
    skipped = [k for k in head_keys if k in sd and sd[k].shape != own[k].shape]
    load = {k: v for k, v in sd.items() if k not in skipped and k in own}
    for k in head_keys:
        load.setdefault(k, own[k])
    m.load_state_dict(load, strict=True)
    notes = [f"weights: {len(load) - len(skipped)} tensors loaded from {what}"]
    if skipped:
        notes.append(f"weights: the head ({head}) keeps its fresh init: the file's head has another number of classes")
    return notes


def init_hash(m: nn.Module) -> str:
    """sha256 (first 16 hex digits) over the state_dict's names and bytes: the model a run starts from."""
    h = hashlib.sha256()
    for k, t in m.state_dict().items():
        h.update(k.encode())
        t = t.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def stage_sizes(m: nn.Module, size: Sequence[int]) -> list[tuple[int, int]]:
    """The feature-map sizes after each downsampling site, in execution order, starting with the input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = sorted(sites(m, tuple(size)), key=lambda s: s.order)
    out = [(int(size[1]), int(size[2]))]
    for s in ss:
        if s.kind == "shortcut" or s.out_size is None:
            continue
        if tuple(s.out_size) != out[-1]:
            out.append((int(s.out_size[0]), int(s.out_size[1])))
    return out


def build(
    v: Variant,
    num_classes: int | None = None,
    input_size: Sequence[int] | None = None,
    *,
    strict_sites: bool = True,
) -> Built:
    """Build ``v`` for ``num_classes`` classes and ``input_size`` (C, H, W): the model, its head adapted to the
    classes, ``v.weights`` loaded, the input channels adapted, and the transformation applied. Seed the global
    RNG first (``torch.manual_seed``) for a reproducible init. ``None`` keeps the model's own classes / size."""
    c = int(input_size[0]) if input_size is not None else None
    sd, recipe = _recorded_weights(v)
    m, natural, notes, rec = _base(v, num_classes, c, use_num_classes=sd is None)
    size = tuple(int(x) for x in (input_size or natural))
    adapt: list[str] = list(notes)
    warns: list[str] = []
    if recipe is not None:  # a poolstride convert --out file: the converted model, then its weights
        if recipe.get("model") and recipe.get("model") != v.model:
            raise VariantError(f"--weights was converted from {recipe.get('model')}, not {v.model}")
        m = rebuild(recipe, builder=lambda: m)
        adapt.append(f"weights file is a converted model (policy {recipe.get('policy')}): rebuilt before loading")
    m, repeat, rec_size = _fit_data(v, m, natural, size, c, num_classes, sd, rec, adapt)
    conversion = None
    if v.policy is not None:
        conversion = _convert(v, m, rec_size, strict_sites, sd is not None, adapt, warns)
        m = conversion.model
    if repeat:
        m = RepeatChannels(m, repeat)
    rec.update(adaptations=adapt)
    return Built(m, (size[0], size[1], size[2]), adapt, rec, warns, conversion)


def _recorded_weights(v: Variant) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
    """(state_dict, converted-model recipe) of ``v.weights``, checked against its recorded sha256; (None, None)
    without weights."""
    if not v.weights:
        return None, None
    want = v.weights.get("sha256")
    if want and Path(v.weights["path"]).is_file() and sha256_file(v.weights["path"]) != want:
        raise VariantError(
            f"--weights {v.weights['path']} changed since this variant was recorded (sha256 {want[:12]}... "
            "recorded); restore the file or start a new study"
        )
    return read_weights(v.weights["path"])


def _fit_data(
    v: Variant,
    m: nn.Module,
    natural: tuple[int, int, int],
    size: tuple[int, ...],
    c: int | None,
    num_classes: int | None,
    sd: dict[str, torch.Tensor] | None,
    rec: dict[str, Any],
    adapt: list[str],
) -> tuple[nn.Module, int | None, tuple[int, ...]]:
    """Fit the model to the data: its head to ``num_classes``, the weights ``sd`` loaded, its input to ``c``
    channels (a grey repeat or an adapted first conv; built-in families take both as arguments). Returns the
    model, the channels a grey input is repeated to (or None) and the input size surgery sees."""
    builtin = is_builtin(v.model)
    repeat = None
    head = None
    if not builtin:
        fc = first_conv(m)
        c_model = fc[1].in_channels if fc else natural[0]
        if c is not None and c != c_model and fc is None:
            raise ModelError(f"{v.model}: the data has {c} channels, the model {c_model}, and it has no conv to adapt")
        repeat = c_model if (c == 1 and c_model != 1) else None
        inner_size = (c_model, size[1], size[2])
        if num_classes is not None:
            m, head, done = _adapt_head(m, v.model, inner_size, num_classes)
            if done:
                adapt.append(done)
            elif rec.get("num_classes_arg"):
                adapt.append(f"head: built with num_classes={num_classes}")
        else:
            out = _run_at(m, inner_size, v.model)
            head = find_head(m, int(out.shape[-1])) if out.dim() == 2 else None
    elif sd is not None:
        head = find_head(m, num_classes or natural_classes(v.model))
    if sd is not None:
        adapt.extend(load_weights(m, sd, head, Path(str(v.weights["path"])).name))  # type: ignore[index]
    rec_size = size
    if not builtin:
        fc = first_conv(m)
        if repeat:
            adapt.append(f"input: grey data repeated to {repeat} channels for the {repeat}-channel stem")
            rec_size = (repeat, size[1], size[2])
        elif fc is not None and c is not None and fc[1].in_channels != c:
            adapt.append(_adapt_conv_channels(m, fc[0], fc[1], c, pretrained=sd is not None))
    return m, repeat, rec_size


def _convert(
    v: Variant,
    m: nn.Module,
    size: tuple[int, ...],
    strict_sites: bool,
    from_weights: bool,
    adapt: list[str],
    warns: list[str],
) -> Conversion:
    """Apply ``v``'s policy to ``m`` at ``size`` (init ``auto``: function-preserving when starting from weights);
    a policy that changes no site is an error."""
    pol = v.policy_obj()
    assert pol is not None
    if v.init == "auto":  # function-preserving init where it exists when starting from weights
        pol = replace(pol, init="preserve" if from_weights else "default")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            conversion = convert_detailed(m, pol, size, strict=strict_sites)
        except PoolstrideError as e:
            raise VariantError(f"variant {v.name!r}: {str(e).splitlines()[0]}") from None
    if not conversion.changes:
        kinds = sorted({f"{s.kind}/{s.type}" for s in conversion.sites})
        raise VariantError(
            f"variant {v.name!r}: policy '{v.policy}' matches no site of {v.model} at "
            f"{'x'.join(map(str, size))} (sites here: {', '.join(kinds) or 'none'})"
        )
    for s, why in conversion.skipped:
        if not pol.select.reasons(s):  # left out by a selector: asked for, not worth a warning
            warns.append(f"{v.name}: site {s.path} left unchanged ({why})")
    if from_weights:
        kept = [ch.site.path for ch in conversion.changes if not ch.function_preserving]
        adapt.append(
            f"{v.name}: converted sites start function-preserving where possible; not possible at: "
            + (", ".join(kept) if kept else "none")
        )
    return conversion


def feature_map_warning(v: Variant, m: nn.Module, size: Sequence[int]) -> str | None:
    """A warning when the last feature map at ``size`` is 1x1 or smaller (an ImageNet net on 32x32 data)."""
    try:
        inner = m.model if isinstance(m, RepeatChannels) else m
        inner_size = (m.channels, size[1], size[2]) if isinstance(m, RepeatChannels) else tuple(size)
        maps = stage_sizes(inner, inner_size)
    except Exception:  # noqa: BLE001 - a warning must never stop a study
        return None
    if min(maps[-1]) > 1:
        return None
    chain = " -> ".join(f"{h}x{w}" for h, w in maps)
    return (
        f"{v.model} at {size[1]}x{size[2]} input: the final feature map is {maps[-1][0]}x{maps[-1][1]} "
        f"(map sizes: {chain}); later downsampling sites act on a single pixel"
    )


def resolve_model_arg(model: Any) -> tuple[str, Any]:
    """(MODEL string, Python object or None) for ``compare(model=...)``: a string, an nn.Module, a factory."""
    if isinstance(model, str):
        if not model.strip():
            raise ModelError("empty model name")
        return model.strip(), None
    if isinstance(model, nn.Module) or callable(model):
        return python_model_name(model), model
    raise ModelError(f"model must be a MODEL string, an nn.Module or a factory, not {type(model).__name__}")


def check_model(model: str, obj: Any = None) -> None:
    """Fail early, in one line, for a MODEL string that cannot be resolved (before any dataset is loaded)."""
    if obj is not None:
        return
    if is_builtin(model):
        models.get_entry(model)
        return
    if model.startswith(PYTHON_PREFIX):
        raise VariantError(
            f"{model} names a Python object passed to compare(); it cannot be rebuilt from the command line "
            "(resume or shard it from Python, or give the model as package.module:callable)"
        )
    check_model_string(model)


__all__ = [
    "Built",
    "RepeatChannels",
    "Variant",
    "VariantError",
    "build",
    "describe",
    "expand_op",
    "feature_map_warning",
    "init_hash",
    "parse_entry",
    "parse_variants",
    "read_weights",
    "resolve_model_arg",
    "slugify",
    "split_list",
    "weights_record",
]


def _inner(built: Built) -> tuple[nn.Module, tuple[int, int, int]]:
    """The model surgery sees (inside a channel repeat) and its input size."""
    m, size = built.model, built.input_size
    if isinstance(m, RepeatChannels):
        return m.model, (m.channels, size[1], size[2])
    return m, size


def per_site_variants(
    base: Variant, policy: str, num_classes: int | None, input_size: Sequence[int]
) -> tuple[list[Variant], list[str]]:
    """One variant per site that ``policy`` (a policy, optionally with ``[selectors]``, or a bare operator spec)
    matches on ``base``'s model, each changing only that site; named by the site path. Returns (variants,
    notes on sites that cannot take the change)."""
    probe = parse_entry(policy, base.model, base.model_kwargs)
    if probe.policy is None:
        raise SpecError(f"--per-site {policy!r}: give a surgery policy such as pool->conv(k=3), or an operator spec")
    pol = probe.policy_obj()
    assert pol is not None
    torch.manual_seed(0)
    built = build(replace(base, name=DEFAULT, slug=DEFAULT), num_classes, input_size)
    inner, size = _inner(built)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ana = analyze(inner, size)
    hit = [s for s in sorted(ana.sites, key=lambda s: s.order) if pol.rule_for(s) and not pol.select.reasons(s)]
    if not hit:
        kinds = sorted({f"{s.kind}/{s.type}" for s in ana.sites})
        raise VariantError(
            f"--per-site '{policy}' matches no site of {base.model} at {'x'.join(map(str, size))} "
            f"(sites here: {', '.join(kinds) or 'none'})"
        )
    out, notes = [], []
    sel = dict(probe.select or {})
    for s in hit:
        site = {"path": s.path, "kind": s.kind, "type": s.type, "stage": s.stage,
                "in_size": None if s.in_size is None else list(s.in_size),
                "out_size": None if s.out_size is None else list(s.out_size),
                "in_channels": s.in_channels, "out_channels": s.out_channels}  # fmt: skip
        v = replace(
            probe, name=s.path, slug=slugify(s.path), select={**sel, "paths": [s.path]}, site=site,
            expanded_from=None, obj=base.obj, weights=base.weights,
        )  # fmt: skip
        try:
            torch.manual_seed(0)
            build(v, num_classes, input_size)
        except PoolstrideError as e:
            notes.append(f"site {s.path}: left out, the change cannot be applied there ({str(e).splitlines()[0]})")
            continue
        out.append(v)
    if not out:
        raise VariantError(f"--per-site '{policy}': no matched site can take the change ({'; '.join(notes)[:300]})")
    return out, notes
