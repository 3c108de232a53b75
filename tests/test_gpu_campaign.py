"""benchmarks/gpu_campaign.py, the GPU campaign's stages, on the CPU:
the plan and its estimates, the arguments, and rehearsals of the stages
on NumPy (real subprocesses, real result files)."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

from benchmarks import gpu_campaign as campaign
from gpunn import reproduce
from gpunn.experiments import EXPERIMENTS
from tests.test_cluster import environment

SCRIPT = os.path.join(campaign.REPO, "benchmarks", "gpu_campaign.py")


def script(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)],
                          env=environment(), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.system
def test_the_plan_fits_the_device_and_covers_the_issue():
    stages = campaign.plan()
    names = [name for name, _, _, _ in stages]
    assert names[0] == "check" and names[-1].startswith("reproduce")
    for name, command, carry, seconds in stages:
        # Each stage inside a device command's 10 minutes, with room to
        # start; the wheels installed first, carried along.
        assert 0 < seconds <= campaign.STAGE_SECONDS + 60, (name, seconds)
        assert command.startswith("python3 -m pip install") and \
            ".whl" in carry and len(command) <= 2000
    # Every model of the suite benchmarked once, on every GPU backend.
    parts = [m for part in campaign.PARTS for m in part]
    assert sorted(parts) == sorted(EXPERIMENTS)
    assert set(campaign.GPU_BACKENDS) <= set(
        __import__("gpunn.bench").bench.BACKENDS)
    # Chapter 6's rows, in the issue's order, and all of them.
    rows = list(campaign.REPRODUCE_ROWS)
    assert rows[:7] == ["dbl_conv_relu", "double_fc_dropout", "vote",
                        "expanded_data_300", "expanded_data_1000",
                        "expanded_data_double_fc_300",
                        "expanded_data_double_fc_1000"]
    assert sorted(rows) == sorted(r.key for r in reproduce.rows(["chapter6"]))
    out = script("plan")
    assert out.returncode == 0 and out.stdout.count("## ") == len(stages)


def test_the_wheels_are_what_dask_needs_beyond_the_gpu_image():
    """gpunn reproduce runs on Dask, which the GPU image lacks: the
    carried wheels and the image's packages hold everything that
    distributed and dask require (read from the installed packages'
    metadata)."""
    pytest.importorskip("distributed")
    have = {n.replace("-", "_") for n in
            campaign.WHEELS + campaign.IMAGE_PACKAGES}
    for package in ("distributed", "dask"):
        for requirement in metadata.requires(package) or []:
            if "extra ==" in requirement or "python_version <" in requirement:
                continue
            name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
            assert name.lower().replace("-", "_") in have, requirement


@pytest.mark.system
def test_bad_arguments():
    p = script("bench", "/tmp/x", "--part", "7")
    assert p.returncode == 2 and "invalid choice" in p.stderr
    p = script("reproduce")
    assert p.returncode == 2 and "out" in p.stderr


def test_packed_results_come_back_in_chunks_and_unpack(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    (folder / "runs").mkdir(parents=True)
    data = os.urandom(300_000)
    (folder / "runs" / "network.npz").write_bytes(data)
    monkeypatch.setattr(campaign, "CHUNK_BYTES", 100_000)
    chunks = campaign._pack(str(folder), str(tmp_path))
    assert [os.path.basename(c) for c in chunks] == [
        "state.tar.gz.00", "state.tar.gz.01", "state.tar.gz.02",
        "state.tar.gz.03"]
    assert all(os.path.getsize(c) <= 100_000 for c in chunks)
    campaign._unpack(chunks, str(tmp_path / "again"))
    assert (tmp_path / "again" / "runs" / "network.npz").read_bytes() == data


@pytest.mark.system
def test_reproduce_stops_in_time_and_the_next_call_goes_on(tmp_path):
    """A rehearsal on NumPy: stopped with Ctrl-C at its time limit, its
    results folder packed; the next call, given the packed files, goes
    on from the checkpoints and ends the table."""
    first = tmp_path / "first"
    p = script("reproduce", first, "--rehearse", "--seconds", "10")
    assert p.returncode == 0, p.stdout + p.stderr
    stopped = json.loads((first / "reproduce.json").read_text())
    state = tmp_path / "state"
    state.mkdir()
    for chunk in first.glob("state.tar.gz.*"):
        os.rename(chunk, state / chunk.name)
    second = tmp_path / "second"
    p = script("reproduce", second, "--rehearse", "--state", state)
    assert p.returncode == 0, p.stdout + p.stderr
    done = json.loads((second / "reproduce.json").read_text())
    assert done["finished"] and [(r["key"], r["epochs"]) for r in
                                 done["table"]] == [("shallow", 20),
                                                    ("basic_conv", 20)]
    if not stopped["finished"]:  # it was stopped, and went on
        assert stopped["commands"][0]["stopped_at_limit"]
        assert stopped["commands"][0]["exit_code"] == 130
        log = (second / "reproduce.log").read_text()
        assert "went on from" in log and ("resumed at epoch" in log or
                                          "done already" in log)
    assert len(list(second.iterdir())) <= 8  # what $OUT gives back


@pytest.mark.slow
@pytest.mark.system
def test_rehearsals_of_check_bench_and_cpu_scaling(tmp_path):
    for args in (["check"], ["bench", "--part", "1"], ["cpu-scaling"]):
        p = script(args[0], tmp_path, "--rehearse", *args[1:])
        assert p.returncode == 0, p.stdout + p.stderr
    check = json.loads((tmp_path / "check.json").read_text())
    assert set(check["first_epoch_seconds"]) == {"cold", "warm"}
    assert check["versions"]["numpy"] and check["gpu_tests"]["exit_code"] == 0
    bench = json.loads((tmp_path / "rehearsal-part1.json").read_text())
    assert [b["name"] for b in bench["benchmarks"]] == [
        "test_epoch_time[dbl_conv-10-gpunn-numpy]"]
    for n in (1, 2):
        result = json.loads((tmp_path / "cpu-threads{}.json".format(n))
                            .read_text())
        assert result["machine_info"]["gpunn"]["threads"] == n
    assert len(list(tmp_path.iterdir())) <= 3 + 3 + 4  # three stages' files
