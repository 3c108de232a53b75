"""The wheel a user installs: built from this tree, installed on its own
(no checkout on the path), it carries the book's MNIST file and trains.
.ci/run does the same in a fresh virtual environment."""

import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_the_wheel_carries_the_data_and_trains(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--no-build-isolation", "--quiet", "-w", tmp_path / "dist",
                    REPO], check=True, capture_output=True)
    wheel, = (tmp_path / "dist").iterdir()
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpunn/data/mnist.pkl.gz" in names
    assert not any("mnist_expanded" in n for n in names)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                    "--quiet", "--target", tmp_path / "site", wheel],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    env.pop("GPUNN_DATA", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import gpunn.mnist_loader as m; "
         "print(m.__file__); print(m.default_path())"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    module, data = where.stdout.split()
    assert module.startswith(str(tmp_path / "site"))
    assert data == str(tmp_path / "site" / "gpunn" / "data" / "mnist.pkl.gz")
    p = subprocess.run(
        [sys.executable, "-m", "gpunn", "--epochs", "1", "--limit", "1000",
         "--eval-limit", "200", "--backend", "numpy", "--out", "run"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Epoch 0: validation accuracy" in p.stdout
    assert os.path.exists(elsewhere / "run" / "network.npz")
    # The benchmark suite is the checkout's: gpunn bench says so.
    p = subprocess.run([sys.executable, "-m", "gpunn", "bench"], cwd=elsewhere,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "benchmark suite of a gpunn checkout" \
        in p.stderr
