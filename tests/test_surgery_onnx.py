"""Converted models export to ONNX and onnxruntime matches PyTorch within 1e-4 (the ``[onnx]`` extra).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``, as in tests/test_onnx.py.
Built-in models run everywhere the extra is installed; torchvision models only where torchvision is.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from poolstride import models
from poolstride.surgery import convert
from poolstride.surgery.coverage import MAIN_POLICIES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::UserWarning", "ignore::poolstride.surgery.SurgeryWarning"
)


MAIN = [*MAIN_POLICIES, "shortcut->pool+identity"]  # the main policies, plus pool + identity


def onnx_max_abs_diff(model: torch.nn.Module, size: tuple[int, int, int], path, scale: list | None = None) -> float:
    model.eval()
    x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    assert y.shape == ref.shape
    if scale is not None:
        scale.append(float(np.abs(ref).max()))
    return float(np.abs(y - ref).max())


@pytest.mark.parametrize("policy", MAIN)
def test_builtin_resnet18_converted_exports(policy, tmp_path):
    torch.manual_seed(0)
    m = convert(models.build("resnet18", num_classes=10), policy, (3, 64, 64))
    assert onnx_max_abs_diff(m, (3, 64, 64), tmp_path / "m.onnx") < 1e-4


@pytest.mark.parametrize("name", ["tiny", "allcnn-c"])
@pytest.mark.parametrize("policy", ["pool->conv(k=3)", "pool->remove+stride-prev", "max->max(s=1)+blur(size=3)"])
def test_builtin_pool_models_export(name, policy, tmp_path):
    torch.manual_seed(0)
    m = convert(models.build(name), policy, (3, 32, 32))
    assert onnx_max_abs_diff(m, (3, 32, 32), tmp_path / "m.onnx") < 1e-4


def test_rewritten_graph_module_exports(tmp_path):
    from test_surgery import FuncNet  # tests/ is on sys.path (pytest rootdir-relative imports)

    torch.manual_seed(0)
    m = convert(FuncNet(), "pool->conv(k=3)", (3, 16, 16))
    assert isinstance(m, torch.fx.GraphModule)
    assert onnx_max_abs_diff(m, (3, 16, 16), tmp_path / "g.onnx") < 1e-4


TV = [
    ("resnet18", "shortcut->avg+1x1; max->max(s=1)+blur; conv->conv(s=1)+blur(size=4)"),
    ("resnet50", "pool->conv(k=3); shortcut->pool+concat"),
    ("vgg11", "pool->remove+stride-prev"),  # at 224: its AdaptiveAvgPool2d(7) exports only for 7*k inputs
    ("mobilenet_v2", "conv->conv(s=1)+blur(size=4)"),
    ("mobilenet_v3_small", "conv->conv(s=1)+max"),
    ("squeezenet1_1", "pool->conv(k=3)"),
    ("densenet121", "pool->conv(k=3)"),
    ("efficientnet_b0", "conv->conv(s=1)+blur(size=4)"),
    ("regnet_y_400mf", "shortcut->avg+1x1; conv->conv(s=1)+blur(size=4)"),
    ("shufflenet_v2_x1_0", "max->max(s=1)+blur; conv->conv(s=1)+blur(size=4)"),
    ("convnext_tiny", "conv->conv(s=1)+blur(size=4)"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "policy"), TV, ids=[t[0] for t in TV])
def test_torchvision_converted_exports(name, policy, tmp_path):
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    size = (3, 224, 224) if name == "vgg11" else (3, 64, 64)
    m = convert(tvm.get_model(name, weights=None), policy, size)
    scale: list = []
    d = onnx_max_abs_diff(m, size, tmp_path / "m.onnx", scale)
    print(f"{name} | {policy} | onnx max abs diff {d:.2e} | max |output| {scale[0]:.2e}")
    assert d < 1e-4
    assert d <= 1e-4 * scale[0]  # some inits give near-zero outputs: relative to the output scale too
