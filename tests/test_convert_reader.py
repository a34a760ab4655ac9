"""The torch-free checkpoint reader: formats, round trips, and refusal of unsafe or broken files."""
from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from convert_helpers import malicious_pickle, write_zip_with_pickle
from paddle_lk.convert import (CheckpointError, TensorView, TorchParameter, UnsafeCheckpointError,
                               load_torch_checkpoint, read_checkpoint, save_torch_checkpoint)
from paddle_lk.io.torch_reader import LEGACY_MAGIC, read_torch_file

FIXTURES = ["replknet_tiny", "replknet_tiny_merged", "van_tiny", "refconv_dw3"]


def _sample_state(rng: np.random.RandomState) -> dict:
    return {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype("float32"),
        "bn.running_var": rng.uniform(0.5, 2, 4).astype("float64"),
        "half": rng.standard_normal((2, 5)).astype("float16"),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "codes": np.arange(6, dtype=np.int32).reshape(2, 3),
        "empty": np.zeros((0, 3), dtype="float32"),
    }


def _assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_keys_and_shapes(fixtures_dir, name):
    state = load_torch_checkpoint(str(fixtures_dir / f"{name}.pth"))
    keys = json.loads((fixtures_dir / f"{name}.json").read_text())["keys"]
    assert {k: list(v.shape) for k, v in state.items()} == keys
    mm = load_torch_checkpoint(str(fixtures_dir / f"{name}.pth"), mmap=True)
    for k in state:
        np.testing.assert_array_equal(state[k], mm[k])


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_formats(tmp_path, legacy):
    rng = np.random.RandomState(1)
    state = _sample_state(rng)
    path = str(tmp_path / "ckpt.pth")
    save_torch_checkpoint({"state_dict": state, "epoch": 3, "arch": "x", "best": 0.5, "flags": [True, None]},
                          path, legacy=legacy)
    obj = read_torch_file(path)
    assert obj["epoch"] == 3 and obj["arch"] == "x" and obj["best"] == 0.5 and obj["flags"] == [True, None]
    _assert_same(obj["state_dict"], state)
    _assert_same(load_torch_checkpoint(path), state)  # unwrapped from "state_dict"


def test_big_endian_and_archive_name(tmp_path):
    state = _sample_state(np.random.RandomState(2))
    path = str(tmp_path / "be.pth")
    save_torch_checkpoint(state, path, archive_name="my_model", byteorder="big")
    _assert_same(load_torch_checkpoint(path), state)


@pytest.mark.parametrize("legacy", [False, True])
def test_shared_storage_and_strided_views(tmp_path, legacy):
    base = np.arange(24, dtype=np.float32)
    state = {
        "whole": TensorView(base, 0, (4, 6), (6, 1)),
        "transposed": TensorView(base, 0, (6, 4), (1, 6)),  # non-contiguous, shares the storage
        "slice": TensorView(base, 6, (2, 3), (3, 1)),
    }
    path = str(tmp_path / "views.pth")
    save_torch_checkpoint(state, path, legacy=legacy)
    out = load_torch_checkpoint(path)
    np.testing.assert_array_equal(out["whole"], base.reshape(4, 6))
    np.testing.assert_array_equal(out["transposed"], base.reshape(4, 6).T)
    np.testing.assert_array_equal(out["slice"], base[6:12].reshape(2, 3))


def test_parameters_and_compressed_entries(tmp_path):
    import zipfile

    w = np.random.RandomState(4).standard_normal((3, 4)).astype("float32")
    stored = str(tmp_path / "params.pth")
    save_torch_checkpoint({"fc.weight": TorchParameter(w), "fc.bias": TorchParameter(w[0].copy(), False)}, stored)
    deflated = str(tmp_path / "deflated.pth")
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    for path in (stored, deflated):
        out = load_torch_checkpoint(path)
        np.testing.assert_array_equal(out["fc.weight"], w)
        np.testing.assert_array_equal(out["fc.bias"], w[0])


def test_bfloat16_is_widened(tmp_path):
    import zipfile

    values = np.array([1.0, -2.5, 0.15625, 2.0 ** 100], dtype=np.float32)  # exact in bfloat16
    bits = (values.view(np.uint32) >> 16).astype(np.uint16).view(np.int16)
    short = str(tmp_path / "short.pth")
    save_torch_checkpoint({"w": bits}, short)
    bf16 = str(tmp_path / "bf16.pth")
    with zipfile.ZipFile(short) as src, zipfile.ZipFile(bf16, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"ctorch\nShortStorage\n", b"ctorch\nBFloat16Storage\n")
            dst.writestr(info.filename, data)
    out = load_torch_checkpoint(bf16)["w"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values)


def test_overrunning_stride_is_refused(tmp_path):
    base = np.arange(8, dtype=np.float32)
    path = str(tmp_path / "overrun.pth")
    save_torch_checkpoint({"w": TensorView(base, 4, (2, 3), (3, 1))}, path)  # reads elements 4..9 of 0..7
    with pytest.raises(CheckpointError, match="overruns its storage"):
        load_torch_checkpoint(path)


def test_expanded_tensor_and_shared_nesting(tmp_path):
    base = np.arange(4, dtype=np.float32)
    path = str(tmp_path / "expanded.pth")
    save_torch_checkpoint({"w": TensorView(base, 0, (10 ** 6, 10 ** 6), (0, 0))}, path)
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        load_torch_checkpoint(path)
    # {"x": L60} with L(i+1) = [L(i), L(i)] through the pickle memo: 2**60 paths, each list visited once.
    nested = b"\x80\x02}X\x01\x00\x00\x00x]q\x000" + b"(h\x00h\x00lq\x000" * 60 + b"h\x00s"
    bomb = str(tmp_path / "bomb.pdparams")
    with open(bomb, "wb") as f:
        f.write(nested + b".")
    with pytest.raises(CheckpointError, match="no tensors"):
        read_checkpoint(bomb)


@pytest.mark.parametrize("container", ["zip", "legacy", "plain"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_never_runs(tmp_path, container, protocol):
    marker = tmp_path / "PWNED"
    payload = malicious_pickle(str(marker), protocol)
    path = str(tmp_path / "evil.pth")
    if container == "zip":
        write_zip_with_pickle(path, payload)
    elif container == "legacy":
        with open(path, "wb") as f:
            f.write(pickle.dumps(LEGACY_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
                    + pickle.dumps({"little_endian": True}, protocol=2) + payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)
    with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system"):
        read_checkpoint(path)
    # Placeholders for unknown globals are inert too: still nothing runs, and no weights come out
    # (the legacy file also lacks its storage section, hence "truncated" there).
    with pytest.raises(CheckpointError, match="no tensors|truncated"):
        read_checkpoint(path, allow_unknown=True)
    assert not marker.exists()


@pytest.mark.parametrize("extra", ["os_system", "namespace"])
def test_placeholders_keep_weights_next_to_unknown_objects(tmp_path, extra):
    import argparse
    import zipfile

    marker = tmp_path / "PWNED"
    state = {"w": np.ones((2, 2), "float32")}
    good = str(tmp_path / "good.pth")
    save_torch_checkpoint({"state_dict": state}, good)
    with zipfile.ZipFile(good) as zf:
        pkl = zf.read("archive/data.pkl")
        data = zf.read("archive/data/0")
    assert pkl.endswith(b"u.")  # ... SETITEMS STOP of the top-level OrderedDict
    if extra == "os_system":
        cmd = f"touch {marker}".encode()
        value = b"cposix\nsystem\n(X" + struct.pack("<I", len(cmd)) + cmd + b"tR"
        refused = "posix.system"
    else:  # what training scripts save next to the weights
        value = pickle.dumps(argparse.Namespace(lr=0.1, epochs=3), protocol=2)[2:-1]
        refused = "argparse.Namespace"
    path = str(tmp_path / "mixed.pth")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl[:-1] + b"X\x04\x00\x00\x00args" + value + b"s.")
        zf.writestr("archive/data/0", data)
    with pytest.raises(UnsafeCheckpointError, match=refused):
        load_torch_checkpoint(path)
    out = load_torch_checkpoint(path, allow_unknown=True)
    np.testing.assert_array_equal(out["w"], state["w"])
    assert not marker.exists()


@pytest.mark.parametrize("global_name", [b"builtins\neval\n", b"torch\nload\n", b"numpy\nload\n",
                                         b"torch._utils\n_rebuild_qtensor\n"])
def test_other_globals_are_refused(tmp_path, global_name):
    path = str(tmp_path / "g.pth")
    write_zip_with_pickle(path, b"\x80\x02c" + global_name + b"X\x01\x00\x00\x00x\x85R.")
    with pytest.raises(UnsafeCheckpointError, match="refused to load global"):
        read_checkpoint(path)


def test_stand_ins_cannot_be_mutated(tmp_path):
    # BUILD on the allow-listed torch.FloatStorage stand-in (to change later loads) is refused.
    path = str(tmp_path / "build.pth")
    write_zip_with_pickle(path, b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x06\x00\x00\x00objectsb.")
    with pytest.raises(UnsafeCheckpointError, match="set state"):
        read_checkpoint(path)


def test_truncated_random_and_empty_files(tmp_path, fixtures_dir):
    data = (fixtures_dir / "replknet_tiny.pth").read_bytes()
    cases = {
        "truncated.pth": data[: len(data) // 2],
        "random.pth": np.random.RandomState(0).bytes(4096),
        "empty.pth": b"",
        "text.pth": b"not a checkpoint at all\n",
    }
    legacy = str(tmp_path / "legacy.pth")
    save_torch_checkpoint({"w": np.ones(1000, "float32")}, legacy, legacy=True)
    cases["legacy_truncated.pth"] = open(legacy, "rb").read()[:-100]
    cases["pickle_truncated.pth"] = pickle.dumps({"a": [1, 2, 3] * 50}, protocol=2)[:40]
    for name, payload in cases.items():
        p = tmp_path / name
        p.write_bytes(payload)
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(str(p))
        assert name in str(info.value), str(info.value)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(str(tmp_path / "missing.pth"))


def test_missing_storage_entry(tmp_path):
    good = str(tmp_path / "good.pth")
    save_torch_checkpoint({"w": np.ones(4, "float32")}, good)
    import zipfile
    bad = str(tmp_path / "bad.pth")
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("data/0"):
                dst.writestr(info, src.read(info))
    with pytest.raises(CheckpointError, match="missing"):
        read_checkpoint(bad)


def test_paddle_pdparams_read_safely(tmp_path):
    import paddle

    layer = paddle.nn.Sequential(paddle.nn.Conv2D(2, 3, 3), paddle.nn.BatchNorm2D(3))
    for protocol in (2, 4):
        path = str(tmp_path / f"p{protocol}.pdparams")
        paddle.save(layer.state_dict(), path, protocol=protocol)
        state, fmt = read_checkpoint(path)
        assert fmt == "pickle"
        assert set(state) == set(layer.state_dict())
        for k, v in layer.state_dict().items():
            np.testing.assert_array_equal(state[k], v.numpy())


def test_matches_torch_load_when_torch_is_installed(tmp_path, fixtures_dir):
    torch = pytest.importorskip("torch")
    paths = [str(fixtures_dir / f"{n}.pth") for n in FIXTURES]
    mine = str(tmp_path / "mine.pth")
    save_torch_checkpoint(_sample_state(np.random.RandomState(3)), mine)
    for path in paths + [mine]:
        ref = torch.load(path, weights_only=True, map_location="cpu")
        ref = ref.get("state_dict", ref)
        ours = load_torch_checkpoint(path)
        assert list(ours) == list(ref)
        for k, v in ref.items():
            np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
