"""The training engine: recipes, schedules, device-resident batches, evaluation, determinism, failures."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poolstride import PoolstrideError
from poolstride.train import (
    DeviceData,
    Recipe,
    RecipeError,
    RunSpec,
    get_recipe,
    lr_factor,
    shift_consistency,
    shift_images,
    synthetic,
    train_run,
)


@pytest.fixture(scope="module")
def ds():
    """A tiny synthetic dataset in the poolstride.data.Dataset shape (uint8 NCHW, int64 labels)."""
    return synthetic(n_train=128, n_test=64, num_classes=4, size=16, seed=0)


def tiny_recipe(**kw):
    base = dict(epochs=2, batch_size=32, shift_images=32, eval_batch_size=64)
    base.update(kw)
    return get_recipe("fast", **base)


def test_recipes_and_overrides():
    paper = get_recipe("paper")
    assert (paper.optimizer, paper.lr, paper.weight_decay, paper.epochs) == ("sgd", 0.05, 1e-3, 350)
    assert paper.milestones == (200, 250, 300) and not paper.augment and paper.schedule == "step"
    short = get_recipe("paper", epochs=35)
    assert short.milestones == (20, 25, 30)  # the step schedule keeps its shape
    assert get_recipe("fast", lr=None).lr == get_recipe("fast").lr  # None = no override
    with pytest.raises(RecipeError, match="unknown recipe 'nope'; valid recipes: fast"):
        get_recipe("nope")
    with pytest.raises(PoolstrideError, match="optimizer"):
        get_recipe("fast", optimizer="rmsprop")
    with pytest.raises(PoolstrideError, match="unknown recipe field"):
        get_recipe("fast", bogus=1)
    assert Recipe.from_dict(paper.to_dict()) == paper


def test_lr_schedules():
    step = Recipe(schedule="step", milestones=(2, 3), gamma=0.1, epochs=4)
    assert [lr_factor(step, e * 10, 40, 10) for e in range(4)] == pytest.approx([1, 1, 0.1, 0.01])
    one = Recipe(schedule="onecycle", pct_start=0.25)
    f = [lr_factor(one, s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.04) and max(f) == pytest.approx(1, abs=0.01) and f[-1] < 0.01
    cos = Recipe(schedule="cosine", warmup_epochs=1)
    c = [lr_factor(cos, s, 100, 10) for s in range(100)]
    assert c[0] == pytest.approx(0.1) and c[9] == pytest.approx(1) and c[-1] < 0.01
    assert lr_factor(Recipe(schedule="constant"), 50, 100, 10) == 1


@pytest.mark.parametrize("channels_last", [True, False])
def test_batched_crop_and_flip_match_reference(ds, channels_last):
    d = DeviceData(ds, torch.device("cpu"), channels_last=channels_last)
    idx, oy, ox = torch.tensor([3, 5, 7]), torch.tensor([0, 4, 8]), torch.tensor([8, 2, 4])
    flip = torch.tensor([True, False, True])
    out = d.gather_augmented(idx, oy, ox, flip, 4)
    xp = F.pad(ds.x_train, (4,) * 4)
    ref = []
    for i in range(3):
        c = xp[idx[i], :, oy[i] : oy[i] + 16, ox[i] : ox[i] + 16]
        ref.append(c.flip(2) if flip[i] else c)
    assert torch.equal(out, torch.stack(ref))
    x = d.normalize(out)
    assert x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    mean, std = torch.tensor(ds.mean).view(1, -1, 1, 1), torch.tensor(ds.std).view(1, -1, 1, 1)
    torch.testing.assert_close(x, (out.float() / 255 - mean) / std)


def test_ranks_take_slices_of_the_global_batch(ds):
    d = DeviceData(ds, torch.device("cpu"))
    one = list(d.train_batches(7, 32, augment=True))
    two = [list(d.train_batches(7, 32, augment=True, rank=r, world=2)) for r in (0, 1)]
    assert len(one) == len(two[0]) == 4
    for s in range(4):
        assert torch.equal(torch.cat([two[0][s][0], two[1][s][0]]), one[s][0])
        assert torch.equal(torch.cat([two[0][s][1], two[1][s][1]]), one[s][1])
    again = list(d.train_batches(7, 32, augment=True))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, again, strict=True))  # a pure function of the seed


def test_shift_images_and_consistency(ds):
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    z = torch.zeros(2, dtype=torch.long)
    assert torch.equal(shift_images(x, z, z, "reflect"), x)
    down = shift_images(x, torch.tensor([1, 0]), torch.tensor([0, -1]), "circular")
    assert torch.equal(down[0], torch.roll(x[0], 1, dims=1))
    assert torch.equal(down[1], torch.roll(x[1], -1, dims=2))
    zeros = shift_images(x, torch.tensor([1, 1]), torch.tensor([0, 0]), "zeros")
    assert torch.equal(zeros[:, :, 0], torch.zeros(2, 1, 4)) and torch.equal(zeros[:, :, 1:], x[:, :, :3])

    class Const(nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 4).index_fill_(1, torch.tensor([2]), 1.0)

    d = DeviceData(ds, torch.device("cpu"))
    assert shift_consistency(Const(), d, max_shift=3, pairs=1) == 100.0


def test_run_is_deterministic_and_writes_its_directory(ds, tmp_path):
    rec = tiny_recipe()
    a = train_run(RunSpec.of("tiny", "blur", seed=1), ds, rec, "cpu", tmp_path / "a")
    b = train_run(RunSpec.of("tiny", "blur", seed=1), ds, rec, "cpu")
    c = train_run(RunSpec.of("tiny", "blur", seed=2), ds, rec, "cpu")
    assert a["status"] == "ok" and a["reason"] is None
    assert a["history"] == [{**h, "time": a["history"][i]["time"]} for i, h in enumerate(b["history"])]
    assert (a["acc"], a["loss"], a["shift_consistency"]) == (b["acc"], b["loss"], b["shift_consistency"])
    assert c["history"][-1]["train_loss"] != a["history"][-1]["train_loss"]
    for key in ("acc", "loss", "shift_consistency", "shift_consistency_circular", "params", "latency_ms"):
        assert a[key] is not None, key
    assert 0 <= a["acc"] <= 100 and 0 <= a["shift_consistency"] <= 100
    assert a["params"] == sum(
        p.numel() for p in __import__("poolstride").models.build("tiny", "blur", num_classes=4).parameters()
    )
    d = tmp_path / "a"
    assert {p.name for p in d.iterdir()} >= {"config.json", "metrics.jsonl", "summary.csv", "checkpoint.pt",
                                              "result.json"}  # fmt: skip
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and all("grad_norm" in x for x in lines)
    assert (d / "summary.csv").read_text().splitlines()[0] == "epoch,train_loss,train_acc,test_loss,test_acc,lr,time"
    assert json.loads((d / "result.json").read_text())["acc"] == a["acc"]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["downsample"] == "blur" and cfg["seed"] == 1 and cfg["recipe"]["epochs"] == 2


def test_interrupted_run_resumes_to_the_same_result(ds, tmp_path):
    rec = tiny_recipe(epochs=3)
    full = train_run(RunSpec.of("tiny", "max", seed=0), ds, rec, "cpu", tmp_path / "full")

    def stop_after_two(event, **kw):
        if event == "epoch" and kw["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(RunSpec.of("tiny", "max", seed=0), ds, rec, "cpu", tmp_path / "cut", callback=stop_after_two)
    assert not (tmp_path / "cut" / "result.json").exists()
    starts = []
    resumed = train_run(
        RunSpec.of("tiny", "max", seed=0), ds, rec, "cpu", tmp_path / "cut",
        callback=lambda e, **kw: starts.append(kw["start_epoch"]) if e == "start" else None,
    )  # fmt: skip
    assert starts == [2]
    strip = [{k: v for k, v in h.items() if k != "time"} for h in full["history"]]
    assert [{k: v for k, v in h.items() if k != "time"} for h in resumed["history"]] == strip
    assert (resumed["acc"], resumed["loss"]) == (full["acc"], full["loss"])
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 3


def test_run_dir_with_other_config_is_refused(ds, tmp_path):
    train_run(RunSpec.of("tiny", "max", seed=0), ds, tiny_recipe(epochs=1), "cpu", tmp_path)
    before = (tmp_path / "result.json").read_bytes()
    with pytest.raises(PoolstrideError, match="different config"):
        train_run(RunSpec.of("tiny", "avg", seed=0), ds, tiny_recipe(epochs=1), "cpu", tmp_path)
    assert (tmp_path / "result.json").read_bytes() == before


def test_corrupted_checkpoint_is_a_clear_error(ds, tmp_path):
    train_run(RunSpec.of("tiny", "max", seed=0), ds, tiny_recipe(epochs=1), "cpu", tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(PoolstrideError, match="checkpoint.pt is corrupted"):
        train_run(RunSpec.of("tiny", "max", seed=0), ds, tiny_recipe(epochs=1), "cpu", tmp_path)


def test_divergence_marks_the_run_failed(ds, tmp_path):
    r = train_run(RunSpec.of("tiny", "conv", seed=0), ds, tiny_recipe(lr=1e9, schedule="constant", label_smoothing=0),
                  "cpu", tmp_path)  # fmt: skip
    assert r["status"] == "failed"
    assert "loss" in r["reason"] and "epoch 1" in r["reason"]
    assert r["acc"] is None and r["shift_consistency"] is None
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["status"] == "failed" and saved["reason"] == r["reason"]


def test_adamw_cosine_no_augmentation_trains(ds):
    r = train_run(RunSpec.of("tiny", "avg", 0), ds, tiny_recipe(optimizer="adamw", lr=3e-3, schedule="cosine",
                                                              augment=False, channels_last=False), "cpu")  # fmt: skip
    assert r["status"] == "ok" and r["history"][-1]["train_loss"] < r["history"][0]["train_loss"] + 0.5


def test_amp_modes_threads_and_top_level_compare():
    from poolstride.train import auto_threads
    from poolstride.train.evaluate import cpu_has_native_bf16, uses_bf16

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert uses_bf16(cpu, "auto") == cpu_has_native_bf16()  # bf16 only where the CPU does it natively
    assert uses_bf16(cuda, "auto") and uses_bf16(cpu, "bf16")
    assert not uses_bf16(cuda, "off") and not uses_bf16(cpu, "off")
    assert 1 <= auto_threads() <= torch.get_num_threads()
    import poolstride
    from poolstride.study import compare

    assert poolstride.compare is compare


def test_fp16_autocast_trains_with_a_gradient_scaler_and_is_recorded(ds, tmp_path):
    from poolstride.train.evaluate import amp_dtype, precision_name

    cpu = torch.device("cpu")
    assert amp_dtype(cpu, "fp16") == torch.float16 and precision_name(cpu, "fp16") == "fp16-autocast"
    assert amp_dtype(cpu, "off") is None and precision_name(cpu, "off") == "fp32"
    rec = tiny_recipe(amp="fp16", epochs=2)
    full = train_run(RunSpec.of("tiny", "max", seed=0), ds, rec, "cpu", tmp_path / "a")
    assert full["status"] == "ok" and full["precision"] == "fp16-autocast" and math.isfinite(full["loss"])
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    assert ck["scaler"] is not None and ck["scaler"]["scale"] > 0  # resumable with its loss scale
