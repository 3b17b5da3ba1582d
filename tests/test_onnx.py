"""ONNX export of every operator that declares ``onnx=True``, checked against PyTorch with onnxruntime.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``), which exports every
operator with torch 2.13. The torch.export-based exporter (``dynamo=True``, needs onnxscript) handles
all of them except ``diffstride``, whose crop size is read from the stride parameter's value (a
data-dependent shape for torch.export); one test below runs it on ``spectral``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from poolstride import ops, parse

onnx = pytest.importorskip("onnx")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

VARIANTS = {
    "blur": ["blur(base=conv,k=3)", "blur(base=avg,size=5)"],
    "softpool": ["softpool(k=3)"],
    "stochastic": ["stochastic(k=3)"],
    "mixed": ["mixed(learnable=true)"],
    "diffstride": ["diffstride(init=1.5,shared=false)"],
    "lp": ["lp(k=3,p=3)"],
}
EXPORTABLE = [s for i in ops.infos() if i.onnx for s in [i.name, *VARIANTS.get(i.name, [])]]


def _ort():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - onnx without onnxruntime
        return None
    return onnxruntime


def _export(op: torch.nn.Module, x: torch.Tensor, path, **kw) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(op, (x,), str(path), input_names=["x"], output_names=["y"], **kw)


def _build(spec: str) -> ops.Downsample:
    torch.manual_seed(0)
    s = parse(spec)
    cout = 6 if ops.get_info(s.name).cls.can_change_channels(s) else 4
    return ops.build(spec, 4, cout).eval()


def test_every_non_exportable_operator_says_why():
    for info in ops.infos():
        if not info.onnx:
            assert info.onnx_note.strip(), f"{info.name}: onnx=False needs an onnx_note"


@pytest.mark.parametrize("spec", EXPORTABLE)
def test_export_matches_pytorch(spec, tmp_path):
    op = _build(spec)
    x = torch.randn(2, 4, 15, 16)
    path = tmp_path / "op.onnx"
    _export(op, x, path, dynamo=False, opset_version=17, dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ort = _ort()
    if ort is None:
        pytest.skip("onnxruntime is not installed")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 3):  # the batch axis stays dynamic
        xb = torch.randn(batch, 4, 15, 16)
        with torch.no_grad():
            ref = op(xb).numpy()
        got = sess.run(None, {"x": xb.numpy()})[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_dynamo_exporter_on_spectral(tmp_path):
    pytest.importorskip("onnxscript")
    ort = _ort()
    op = _build("spectral")
    x = torch.randn(1, 4, 15, 16)
    path = tmp_path / "spectral.onnx"
    _export(op, x, path, dynamo=True)
    onnx.checker.check_model(onnx.load(str(path)))
    if ort is None:
        pytest.skip("onnxruntime is not installed")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, op(x).detach().numpy(), atol=1e-4, rtol=1e-4)
