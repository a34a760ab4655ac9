import os
import pathlib

import numpy as np
import paddle
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = (ROOT.parent / "shared" / "fixtures" / "torch_reference")


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(scope="session", autouse=True)
def _build_custom_op_once():
    """Build (or load from cache) the large-kernel op before any test, so its one-time compile never
    lands inside a test with its own timeout (subprocess trainers, notebooks)."""
    import paddle_lk.ops

    paddle_lk.ops.is_available()
    yield
