"""The built wheel is complete: every data file the package reads is inside, and the installed
console script runs `thawkit advise` and a one-epoch `thawkit train` from a fresh virtual environment."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "thawkit"

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    [built] = out.glob("thawkit-*.whl")
    return built


def test_wheel_holds_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = [p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert data_files, "the package reads data files (general-English sample, demo data)"
    for path in data_files:
        assert f"thawkit/{path.relative_to(PACKAGE).as_posix()}" in names


def test_installed_wheel_runs_advise_and_train(wheel, tmp_path, tiny_bert):
    # A fresh environment with only the wheel installed; its dependencies are borrowed from this one
    # through a .pth line (their own .pth files, the editable thawkit's among them, are not read).
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "borrowed-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", purelib, str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    where = subprocess.run([str(python), "-c", "import thawkit; print(thawkit.__file__)"], check=True, capture_output=True, text=True, env=env)
    assert where.stdout.startswith(purelib), "the wheel's thawkit, not the source tree's, must be the one imported"
    from thawkit.testing import write_toy_csv

    data = write_toy_csv(tmp_path / "toy.csv", n=60)
    script = Path(purelib) / "bin" / "thawkit"  # the wheel's console script (pip --target puts it there)
    assert script.exists()
    subprocess.run([str(python), str(script), "advise", "--data", str(data), "--model", str(tiny_bert)],
                   check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    trained = subprocess.run([str(python), str(script), "train", "--data", str(data), "--model", str(tiny_bert), "--epochs", "1",
                              "--max-length", "32", "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "run" / "thawkit.json").exists()

