"""The published numbers the reproductions compare with: one table, each number with its source tag.

Tags follow ``shared/reference/papers.md``: ``P`` seen in the paper or the authors' repository, ``S`` only in
third-party copies (unconfirmed from primary), ``U`` unconfirmed, ``C`` computed by arithmetic from the stated
architecture (not a paper number). Errors and accuracies are in percent; MACs are multiply-accumulates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PaperNumber:
    key: str  # e.g. "allcnn/C/all-cnn/error"
    value: float
    unit: str  # "% error", "% acc", "% consistency", "MACs", "px", "x"
    what: str
    source: str  # paper, table, arXiv id
    tag: str  # P | S | U | C

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def cite(self) -> str:
        return f"{self.source} [{self.tag}]"


_ALLCNN = "Springenberg et al. 2015, Table 3, arXiv:1412.6806"
_HE16 = "He et al. 2016, arXiv:1512.03385"
_BOT = "He et al. 2019 (Bag of Tricks), arXiv:1812.01187"
_ZHANG = "Zhang 2019, adobe/antialiased-cnns README (ICML-era), arXiv:1904.11486"
_ZHANG_K4 = "Zhang 2019, adobe/antialiased-cnns README_IMAGENET.md (2020, size 4, from scratch), arXiv:1904.11486"
_MISHKIN = "Mishkin et al. 2017, ducha-aiki/caffenet-benchmark Pooling.md, arXiv:1606.02228"

_ROWS: list[PaperNumber] = []


def _add(key: str, value: float, unit: str, what: str, source: str, tag: str) -> None:
    _ROWS.append(PaperNumber(key, value, unit, what, source, tag))


# --- All-CNN (papers.md 1.4): CIFAR-10 test error, no augmentation ---------------------------------------------
for _fam, _vals in {
    "a": (12.47, 13.46, 10.21, 10.30),
    "b": (10.20, 10.98, 9.33, 9.10),
    "c": (9.74, 10.19, 9.31, 9.08),
}.items():
    for _var, _v in zip(("base", "strided", "convpool", "all-cnn"), _vals, strict=True):
        _add(f"allcnn/{_fam}/{_var}/error", _v, "% error", f"{_var} {_fam.upper()}, CIFAR-10 no aug", _ALLCNN, "S")
for _fam, _p in {"a": (0.839, 1.254), "b": (0.886, 1.301), "c": (0.955, 1.370)}.items():
    _add(f"allcnn/{_fam}/base/params_m", _p[0], "M params", f"Model {_fam.upper()} (and Strided)", "papers.md 1.4", "C")
    _add(
        f"allcnn/{_fam}/all-cnn/params_m", _p[1], "M params", f"All-CNN-{_fam.upper()} / ConvPool", "papers.md 1.4", "C"
    )
for _name, _rf in {
    "c/base": 27,
    "c/all-cnn": 27,
    "c/convpool": 33,
    "c/strided": 21,
    "a/base": 27,
    "a/strided": 21,
}.items():
    _add(f"allcnn/{_name}/rf", _rf, "px", "receptive field at the 1x1 head", "papers.md 1.4", "C")

# --- CIFAR ResNets (papers.md 2, Table 6): option A shortcuts -------------------------------------------------
for _d, _e in {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}.items():
    _add(f"resnet{_d}/A/error", _e, "% error", f"ResNet-{_d}, CIFAR-10, option A", f"{_HE16}, Table 6", "P")
_add("resnet20/params_m", 0.27, "M params", "ResNet-20", f"{_HE16}, Table 6", "P")
_add("resnet56/params_m", 0.85, "M params", "ResNet-56", f"{_HE16}, Table 6", "P")
# ImageNet shortcut options (ResNet-34, 10-crop top-1 error) and ResNet-D
_add("resnet34/A/top1_error", 25.03, "% error", "ResNet-34 A, ImageNet 10-crop", f"{_HE16}, Table 3", "P")
_add("resnet34/B/top1_error", 24.52, "% error", "ResNet-34 B, ImageNet 10-crop", f"{_HE16}, Table 3", "P")
_add("resnet34/C/top1_error", 24.19, "% error", "ResNet-34 C, ImageNet 10-crop", f"{_HE16}, Table 3", "P")
_add("resnet50/D/gain", 0.3, "pt top-1", "ResNet-50-D over -C (avg-pool shortcut)", f"{_BOT}, Sec. 4.3", "S")

# --- stems (papers.md 2, 3, 7, 9) ------------------------------------------------------------------------------
_add("resnet18/macs", 1.8e9, "MACs", "ResNet-18 multiply-adds", f"{_HE16}, Table 1", "P")
_add("resnet50/macs", 3.8e9, "MACs", "ResNet-50 multiply-adds", f"{_HE16}, Table 1", "P")
_add("resnet50/original/gflops", 3.86e9, "FLOPs (as printed)", "ResNet-50", f"{_BOT}, Table 5", "U")
_add("resnet50/deep/gflops", 4.35e9, "FLOPs (as printed)", "ResNet-50-C (deep stem)", f"{_BOT}, Table 5", "U")
_add("stem/7x7_vs_3x3", 49 / 9, "x", "a 7x7 conv costs 5.4x a 3x3", f"{_BOT}, Sec. 4.2", "S")
_add("stem/s1pool_ratio", 4.0, "x", "7x7/1 + 2x2 pool stem MACs / 7x7/2 stem MACs (at least)", "the question", "C")
_add("stem/original/rf", 11, "px", "7x7/2 conv + 3x3/2 max-pool", "papers.md 9", "C")
_add("stem/original/jump", 4, "px", "stem output stride", f"{_HE16}, Table 1", "P")

# --- BlurPool (papers.md 5): ImageNet, top-1 acc / consistency, trained from scratch ----------------------------
#: Zhang's filter names by size, as his READMEs print them (size 4 is *Tri*-4: [1,3,3,1]; only size 5 is "Bin").
ZHANG_FILTERS: dict[int, str] = {1: "baseline", 2: "Rect-2", 3: "Tri-3", 4: "Tri-4", 5: "Bin-5"}
# sizes 1, 2, 3, 5 from the ICML-era README; size 4 from the later README_IMAGENET.md (same from-scratch recipe)
for _k, (_a, _c) in {
    1: (76.16, 89.20),
    2: (76.81, 89.96),
    3: (76.83, 90.91),
    4: (77.23, 91.29),
    5: (77.04, 91.31),
}.items():
    _lbl, _src = ZHANG_FILTERS[_k], _ZHANG_K4 if _k == 4 else _ZHANG
    _add(f"blurpool/resnet50/{_k}/acc", _a, "% acc", f"ResNet-50 {_lbl}, ImageNet", _src, "P")
    _add(f"blurpool/resnet50/{_k}/consistency", _c, "% consistency", f"ResNet-50 {_lbl}, ImageNet", _src, "P")
for _k, (_a, _c) in {1: (71.59, 88.52), 2: (72.15, 89.24), 3: (72.20, 89.60), 5: (72.33, 90.19)}.items():
    _lbl = ZHANG_FILTERS[_k]
    _add(f"blurpool/vgg16/{_k}/acc", _a, "% acc", f"VGG16 {_lbl}, ImageNet", _ZHANG, "P")
    _add(f"blurpool/vgg16/{_k}/consistency", _c, "% consistency", f"VGG16 {_lbl}, ImageNet", _ZHANG, "P")
for _k, (_a, _c) in {1: (69.74, 85.11), 3: (71.69, 87.51), 4: (71.48, 88.07)}.items():
    _lbl, _src = ZHANG_FILTERS[_k], _ZHANG_K4 if _k == 4 else _ZHANG
    _add(f"blurpool/resnet18/{_k}/acc", _a, "% acc", f"ResNet-18 {_lbl}, ImageNet", _src, "P")
    _add(f"blurpool/resnet18/{_k}/consistency", _c, "% consistency", f"ResNet-18 {_lbl}, ImageNet", _src, "P")
# The accuracy gain over the baseline across Zhang's from-scratch ImageNet tables (ICML-era README and
# README_IMAGENET.md: AlexNet, VGG16(bn), ResNet-18/34/50/101, DenseNet121, MobileNet-v2; sizes 2-5) runs from
# +0.03 pt (AlexNet Bin-5, 56.55 -> 56.58) to +1.95 pt (ResNet-18 Tri-3, 69.74 -> 71.69): "+0.0 to +2.0 pt" to
# one decimal (papers.md 10 says +1.9; the tables give +1.95).
_add("blurpool/imagenet/acc_gain_min", 0.03, "pt top-1", "smallest gain: AlexNet Bin-5 vs baseline", _ZHANG, "P")
_add("blurpool/imagenet/acc_gain_max", 1.95, "pt top-1", "largest gain: ResNet-18 Tri-3 vs baseline", _ZHANG, "P")

# --- Mishkin et al. CaffeNet pooling benchmark (papers.md 10): ImageNet-128 top-1 accuracy ---------------------
# Pooling.md prints top-1 as a fraction (max pooling 0.470, corrected there from 0.471; 0.471 is the separate
# "3x3/2 window" row). Stored here converted explicitly to percent (x100), the unit of every other accuracy in this
# table and of the accuracies the mishkin-pooling protocol prints next to them.
MISHKIN_TOP1_FRACTION: dict[str, float] = {
    "max": 0.470,
    "avg": 0.435,
    "stochastic": 0.438,
    "max+avg": 0.483,
    "strided": 0.472,
}
for _n, _f in MISHKIN_TOP1_FRACTION.items():
    _add(
        f"mishkin/{_n}/acc",
        round(100 * _f, 1),
        "% acc",
        f"CaffeNet {_n} pooling, ImageNet 128 px (Pooling.md: {_f:.3f})",
        _MISHKIN,
        "P",
    )

PAPERS: dict[str, PaperNumber] = {r.key: r for r in _ROWS}


def get(key: str) -> PaperNumber:
    """The paper number stored under ``key`` (KeyError names the close keys)."""
    try:
        return PAPERS[key]
    except KeyError:
        close = [k for k in PAPERS if k.split("/")[0] == key.split("/")[0]]
        raise KeyError(f"no paper number {key!r}; keys with that prefix: {', '.join(close[:12])}") from None


def value(key: str) -> float:
    return PAPERS[key].value


def table() -> list[dict[str, Any]]:
    """Every stored number as a dict (what ``poolstride reproduce --papers`` prints)."""
    return [r.to_dict() for r in _ROWS]


__all__ = ["MISHKIN_TOP1_FRACTION", "PAPERS", "ZHANG_FILTERS", "PaperNumber", "get", "table", "value"]
