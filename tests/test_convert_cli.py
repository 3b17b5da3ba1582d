"""``poolstride convert``: tables, JSON, --out recipes, --diff, and one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest
import torch

from poolstride.cli import main
from poolstride.surgery import load_converted


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_convert_table_with_deltas(capsys, monkeypatch):
    from poolstride.cli import common

    monkeypatch.setattr(common.console, "width", 200)
    rc, out, err = run(capsys, "convert", "tiny", "--policy", "pool->conv(k=3)", "--input", "3x32x32")
    assert rc == 0, err
    assert "features.3.op" in out and "max" in out and "conv" in out
    assert "params 24,346 -> 72,842 (+48,496)" in out
    assert "MACs" in out and "3 of 3 sites changed" in out


def test_convert_json_skip_and_warning(capsys):
    rc, out, err = run(
        capsys, "convert", "resnet18", "-p", "conv->conv(s=1)+blur(size=4)", "--skip", "stem",
        "--input", "64", "--json",
    )  # fmt: skip
    assert rc == 0, err
    d = json.loads(out)
    rows = {r["path"]: r for r in d["sites"]}
    assert rows["conv1.op"]["status"] == "skipped: skip=stem"
    assert rows["layer2.0.conv1.op"]["status"] == "changed"
    assert rows["layer2.0.conv1.op"]["after"].endswith("blur(base=avg)")
    assert rows["layer2.0.conv1.op"]["params_delta"] == 0 and rows["layer2.0.conv1.op"]["macs_delta"] > 0
    assert d["after"]["macs"] > d["before"]["macs"] and d["after"]["params"] == d["before"]["params"]
    # a selector that matches nothing warns on stderr, it is never silent
    rc, out, err = run(capsys, "convert", "tiny", "-p", "pool->avg", "--path", "nowhere.*", "--input", "32")
    assert rc == 0 and "warning: selector path=nowhere.* matches no site" in err


def test_convert_out_saves_weights_and_recipe(capsys, tmp_path):
    path = tmp_path / "m.pt"
    rc, out, err = run(
        capsys, "convert", "resnet18", "-p", "shortcut->avg+1x1; max->max(s=1)+blur", "--input", "3x64x64",
        "--out", str(path),
    )  # fmt: skip
    assert rc == 0, err
    blob = torch.load(path, weights_only=True)
    assert blob["recipe"]["model"] == "resnet18" and blob["recipe"]["input_size"] == [3, 64, 64]
    assert json.loads((tmp_path / "m.pt.json").read_text())["policy"] == blob["recipe"]["policy"]
    m = load_converted(path)
    sd = m.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in blob["state_dict"].items())


def test_convert_diff(capsys):
    rc, out, _ = run(capsys, "convert", "tiny", "-p", "pool->avg", "--input", "32", "--diff")
    assert rc == 0 and "--- before" in out and "+      (op): AvgPool" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["tiny", "-p", "pool->nope"], "unknown operator 'nope'"),
        (["tiny", "-p", "pool"], "valid policy forms"),
        (["tiny", "-p", "pool->conv", "--init", "magic"], "init='magic' is not valid"),
        (["no-such-model", "-p", "pool->conv"], "unknown model"),
        (["allcnn-c", "-p", "pool->remove+stride-prev", "--input", "32"], None),
        (["tiny", "-p", "pool->conv", "--input", "3x0"], "bad --input"),
        (["tiny", "-p", "pool->conv", "--stage", "two"], "bad selector"),
    ],
)
def test_convert_errors_are_one_line_exit_2(capsys, args, needle):
    rc, out, err = run(capsys, "convert", *args)
    if needle is None:
        assert rc == 0, err
        return
    assert rc == 2 and needle in err
    assert err.strip().count("\n") == 0 and err.startswith("error:")


def test_untraceable_model_without_sites_exits_2(capsys):
    rc, _, err = run(capsys, "convert", "test_surgery:Hopeless", "-p", "pool->conv", "--input", "8")
    assert rc == 2 and "cannot be traced" in err and "Traceback" not in err


def test_convert_torchvision_model_and_reload(capsys, tmp_path):
    pytest.importorskip("torchvision")
    path = tmp_path / "tv.pt"
    rc, out, err = run(
        capsys, "convert", "torchvision:resnet18", "-p", "shortcut->avg+1x1; conv->conv(s=1)+blur(size=4)",
        "--skip", "stem", "--input", "64", "--json", "--out", str(path),
    )  # fmt: skip
    assert rc == 0, err
    d = json.loads(out)
    kinds = {r["path"]: (r["kind"], r["status"]) for r in d["sites"]}
    assert kinds["conv1"] == ("stem", "skipped: skip=stem")
    assert kinds["layer2.0.downsample.0"] == ("shortcut", "changed")
    assert kinds["layer2.0.conv1"] == ("conv", "changed")
    m = load_converted(path)
    assert type(m).__name__ == "ResNet" and m.layer2[0].downsample[0][1].stride == (1, 1)
