"""gpunn bench and gpunn bench compare, as a user runs them: real
subprocesses, the real suite (its quick form), real result files."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gpunn(*args, cwd):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    env["PYTHONPATH"] = REPO
    return subprocess.run([sys.executable, "-m", "gpunn", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.system
def test_bench_on_two_machines_and_compare_them(tmp_path):
    pytest.importorskip("pytest_benchmark")
    files = []
    for name in ("first box", "second box"):
        p = gpunn("bench", "--models", "shallow", "--batch", "10",
                  "--backend", "gpunn-numpy", "--quick", "--name", name,
                  cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].startswith("gpunn bench: 1 case on {}, about "
                                   .format(name))
        assert lines[1].startswith("[1/1] shallow mini-batch 10 gpunn-numpy: "
                                   "passed")
        path = tmp_path / "bench-{}.json".format(name.replace(" ", "-"))
        assert lines[-1] == "Wrote {}".format(path.name)
        doc = json.load(open(path))
        assert doc["machine_info"]["gpunn"]["name"] == name
        info, = [b["extra_info"] for b in doc["benchmarks"]]
        assert info["model"] == "shallow" and info["epoch_seconds"] > 0
        files.append(path)
    p = gpunn("bench", "compare", *files, "--markdown", "cmp.md", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    row, = [line for line in p.stdout.splitlines()
            if line.startswith("| shallow ")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["shallow", "gpunn-numpy", "10"]
    first, second, ratio = map(float, cells[3:])
    assert ratio == pytest.approx(second / first, abs=0.01)
    assert "second box / first box" in p.stdout and "(s/epoch)" in p.stdout
    assert (tmp_path / "cmp.md").read_text() == p.stdout
    # What is not a result file, or an unknown model, is said so.
    p = gpunn("bench", "compare", tmp_path / "cmp.md", cwd=tmp_path)
    assert p.returncode == 2 and "not a JSON file" in p.stderr
    p = gpunn("bench", "--models", "shalow", cwd=tmp_path)
    assert p.returncode == 2 and "no model 'shalow'" in p.stderr
