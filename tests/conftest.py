import os
import pathlib

import numpy as np
import paddle
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = (ROOT.parent / "shared" / "fixtures" / "torch_reference")


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """The official-code reference outputs. CI has them: a missing folder fails loudly (a silent skip
    would hide that nothing was compared); set PADDLE_LK_SKIP_FIXTURE_TESTS=1 to skip on purpose."""
    if not FIXTURES.is_dir():
        if os.environ.get("PADDLE_LK_SKIP_FIXTURE_TESTS") == "1":
            pytest.skip(f"fixtures not found at {FIXTURES} (PADDLE_LK_SKIP_FIXTURE_TESTS=1)")
        pytest.fail(f"reference fixtures not found at {FIXTURES}: the tests that compare with the official "
                    f"PyTorch outputs need ../shared/fixtures/torch_reference next to the repository "
                    f"(set PADDLE_LK_SKIP_FIXTURE_TESTS=1 to skip them)", pytrace=False)
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
