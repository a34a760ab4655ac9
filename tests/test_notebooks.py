"""Every notebook under notebooks/ runs top to bottom on CPU (nbclient), in a temporary working dir,
with a kernel that is this interpreter; committed notebooks carry no outputs."""
import json
import os
import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "paddle_lk_test"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "torch_reference"  # the notebooks' default location too


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec pointing at sys.executable, found through JUPYTER_PATH (nothing installed globally)."""
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "paddle_lk test kernel", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return str(spec_dir.parents[1])


def test_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook {prefix}*: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs committed"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", kernel_env)
    if path.name.startswith("02_"):
        fixtures = pathlib.Path(os.environ.get("PADDLE_LK_FIXTURES", FIXTURES))
        if not fixtures.is_dir():
            pytest.skip(f"fixtures not found at {fixtures}")
    listing = sorted(os.listdir(ROOT / "notebooks"))
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    client.execute()
    # Reported, never asserted (visible with -s; `--durations` lists it too).
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    assert sorted(os.listdir(ROOT / "notebooks")) == listing, "the notebook wrote into the repository"
