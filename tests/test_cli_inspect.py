"""CLI: poolstride inspect / cost / explain (tables, the documented --json schemas, user errors)."""

from __future__ import annotations

import json

from poolstride.cli import main

LAYER_KEYS = {
    "name", "op", "kind", "shape", "params", "trainable_params", "macs", "backward_macs", "other_ops", "other_kind",
    "activation_bytes", "rf", "jump", "center", "rf_global", "downsample", "site", "view", "note",
}  # fmt: skip
TOTAL_KEYS = {
    "params", "trainable_params", "frozen_params", "macs", "flops", "other_ops", "other_ops_by_kind",
    "activation_bytes", "input_bytes", "train_step", "rf", "rf_hw", "jump", "jump_hw", "center", "rf_layer",
    "rf_global", "misaligned", "sites",
}  # fmt: skip


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_inspect_json_schema(capsys):
    rc, out, _ = run(capsys, "inspect", "allcnn-c:all-cnn", "--json")
    d = json.loads(out)
    assert rc == 0
    assert set(d) == {"schema", "model", "input_size", "batch", "method", "execution", "conventions", "totals",
                      "layers", "warnings"}  # fmt: skip
    assert d["schema"] == 1 and d["input_size"] == [3, 32, 32] and d["method"] == "fx"
    assert set(d["totals"]) == TOTAL_KEYS and set(d["layers"][0]) == LAYER_KEYS
    assert set(d["totals"]["train_step"]) == {"macs", "backward_macs", "flops", "other_ops"}
    t = d["totals"]
    assert t["params"] == 1_369_738 and t["rf"] == 27 and t["jump"] == 4 and t["flops"] == 2 * t["macs"]
    sites = [layer for layer in d["layers"] if layer["site"]]
    assert [s["site"]["op"] for s in sites] == ["conv", "conv"]


def test_inspect_table_and_options(capsys):
    rc, out, _ = run(capsys, "inspect", "tiny", "--input", "3x16x16", "--downsample", "blur")
    assert rc == 0 and "receptive field" in out and "training step" in out and "blur" in out
    rc, out, _ = run(capsys, "inspect", "resnet50", "-O", "stem=s1pool", "--json")
    d = json.loads(out)
    assert any(layer["site"] and layer["site"]["op"].startswith("convpool") for layer in d["layers"])


def test_inspect_unknown_model_is_a_user_error(capsys):
    rc, out, err = run(capsys, "inspect", "no-such-model")
    assert rc == 2 and out == "" and err.startswith("error: unknown model") and err.count("\n") == 1
    rc, _, err = run(capsys, "inspect", "tiny", "--input", "3xfoo")
    assert rc == 2 and "bad --input" in err


def test_cost_variants_json(capsys):
    rc, out, _ = run(
        capsys, "cost", "tiny", "--variants", "max,conv(k=3),blur(base=max,size=3)", "--no-latency", "--json"
    )
    d = json.loads(out)
    assert rc == 0 and d["schema"] == 1 and d["devices"] == [] and d["latency_batch"] is None
    rows = d["variants"]
    assert [r["variant"] for r in rows] == ["max", "conv(k=3)", "blur(base=max,size=3)"]
    assert set(rows[0]) == {
        "variant", "params", "trainable_params", "macs", "flops", "other_ops", "activation_bytes",
        "train_step_macs", "rf", "jump", "misaligned", "latency", "ratio",
    }  # fmt: skip
    assert rows[0]["ratio"]["macs"] == 1.0 and rows[1]["ratio"]["macs"] > 1.0
    assert rows[2]["rf"] > rows[0]["rf"] and rows[2]["macs"] == rows[0]["macs"]
    assert rows[2]["other_ops"] > rows[0]["other_ops"]


def test_cost_with_latency_table(capsys):
    rc, out, _ = run(capsys, "cost", "tiny", "-v", "base,avg", "--input", "3x16x16", "--repeats", "2", "--warmup", "0")
    assert rc == 0 and "fwd ms cpu" in out and "avg" in out


def test_cost_bad_variant(capsys):
    rc, out, err = run(capsys, "cost", "tiny", "--variants", "max,nonesuch", "--no-latency")
    assert rc == 2 and "unknown operator" in err


def test_explain_default_and_claims(capsys):
    rc, out, _ = run(capsys, "explain", "--json")
    d = json.loads(out)["ops"]
    by = {r["spec"]: r for r in d["operators"]}
    assert rc == 0 and by["max"]["output"] == [[6, 8], [14, 16]] and by["conv(k=2)"]["params"] == 5
    rc, out, _ = run(capsys, "explain")
    assert rc == 0 and "conv(k=2)" in out and "13.5" in out
    rc, out, _ = run(capsys, "explain", "max,avg", "--input", "6x6", "--json")
    d = json.loads(out)["ops"]
    assert d["input_size"] == [1, 6, 6] and [r["out_size"] for r in d["operators"]] == [[3, 3], [3, 3]]
    rc, out, _ = run(capsys, "explain", "stem")
    assert rc == 0 and "x4.00" in out and "claim holds" in out
    rc, out, _ = run(capsys, "explain", "vgg", "--json")
    v = json.loads(out)["vgg"]
    assert v["holds"] and v["one_7x7"]["params_per_c2"] == 49 and v["three_3x3"]["params_per_c2"] == 27


def test_gradflow_command(capsys, tmp_path):
    png = tmp_path / "erf.png"
    rc, out, _ = run(capsys, "gradflow", "tiny", "--input", "3x16x16", "--batch", "2", "--erf", str(png), "--json")
    d = json.loads(out)
    assert rc == 0 and d["schema"] == 1 and png.stat().st_size > 0
    assert set(d["gradflow"]) == {"loss", "ratio_first_last", "activation_ratio_first_last", "layers"}
    assert len(d["gradflow"]["layers"]) == 4 and d["erf"]["feature_size"] == [2, 2]
    rc, out, _ = run(capsys, "gradflow", "tiny", "--input", "3x16x16", "--batch", "2")
    assert rc == 0 and "first/last weight-gradient ratio" in out
    rc, _, err = run(capsys, "gradflow", "tiny", "--checkpoint", str(tmp_path / "missing.pt"))
    assert rc == 2 and "cannot load checkpoint" in err
