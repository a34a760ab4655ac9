"""Issue 16: the installed ``paddle_lk`` command behaves like tools/*.py; model discovery."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import paddle_lk
from helpers import tiny_cls_config
from paddle_lk.__main__ import main as console_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _console() -> str:
    exe = shutil.which("paddle_lk", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.fail("the paddle_lk console script is not installed next to this interpreter "
                    "(pip install -e . registers it from setup.py's entry_points)")
    return exe


def test_console_script_is_installed_and_lists_models():
    res = subprocess.run([_console(), "models", "--pretrained", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    infos = {i["name"]: i for i in json.loads(res.stdout)}
    assert "RepLKNet31B" in infos and "RepLKNet3" not in infos and "UniRepLKNet_S" in infos
    assert infos["UniRepLKNet_S"]["top1"] == 86.4 and infos["VAN_b2"]["params_m"] == 26.6


def test_console_commands_are_the_tools(tmp_path, capsys):
    cfg = tiny_cls_config(tmp_path)
    assert console_main(["train", "-c", str(cfg), "-o", "Global.epochs=1", "-o", "Global.use_visualdl=false",
                         "--json"]) == 0
    capsys.readouterr()
    assert console_main(["eval", "-c", str(cfg), "-w", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 8
    assert console_main(["convert", "--src", str(tmp_path / "nope.pth"), "--dst", str(tmp_path / "x.pdparams")]) == 2
    assert "convert_torch: error:" in capsys.readouterr().err
    assert console_main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    for command in ("train", "eval", "infer", "export", "predict", "convert", "erf", "models"):
        try:
            code = console_main([command, "--help"])
        except SystemExit as exc:  # argparse's own --help exit
            code = exc.code
        assert code == 0, command
        assert "usage:" in capsys.readouterr().out


def test_list_models_filters_and_model_info():
    assert paddle_lk.list_models("unireplknet_*", family="unireplknet")[:2] == ["UniRepLKNet_A", "UniRepLKNet_B"]
    assert set(paddle_lk.list_models(pretrained=True)) >= {"VAN_b0", "RepLKNetXL", "UniRepLKNet_A"}
    info = paddle_lk.model_info("RepLKNetXL")
    assert info["mean"] == (0.5, 0.5, 0.5) and info["input_size"] == (3, 320, 320)
    assert info["checkpoints"][0]["file"] == "RepLKNet-XL_MegData73M_ImageNet1K.pth"
