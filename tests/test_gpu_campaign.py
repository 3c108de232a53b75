"""benchmarks/gpu_campaign.py, the GPU campaign's two device calls, on
the CPU: the plan fits a lent GPU's 15 minutes, a call stops itself at
its deadline and keeps what it had, the benchmark's results are merged
as they come; and rehearsals of both calls on NumPy (real subprocesses,
real result files), the gpu tests collected on their real-CuPy ids."""

import contextlib
import json
import os
import subprocess
import sys
import time
import types

import pytest

from benchmarks import gpu_campaign as campaign
from tests.test_cluster import environment

SCRIPT = os.path.join(campaign.REPO, "benchmarks", "gpu_campaign.py")
OUT_FILES = 8  # what $OUT gives back


def script(*args, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)],
                          env=environment(), capture_output=True, text=True,
                          timeout=timeout)


def test_the_plan_fits_fifteen_device_minutes(capsys):
    """Two calls (call 1 at most 8 minutes, call 2 at most 4) whose
    limits, with two machine starts of 2 minutes, fit the 15 minutes;
    each command stops itself (--seconds) in time to write its results
    before its timeout_s; no wheels, nothing carried; and ``plan``
    prints exactly these commands with their timeout_s and carry."""
    measure, train = campaign.CALLS
    assert measure.timeout_s <= 8 * 60 and train.timeout_s <= 4 * 60
    assert sum(c.timeout_s for c in campaign.CALLS) + 2 * 120 <= 15 * 60
    assert campaign.planned_seconds() <= campaign.DEVICE_SECONDS == 15 * 60
    assert campaign.MARGIN_SECONDS >= campaign.GRACE_SECONDS + 10
    assert campaign.RERUN.timeout_s == train.timeout_s
    for call, verb in ((measure, "measure"), (train, "train"),
                       (campaign.RERUN, "measure")):
        words = call.command.split()
        assert words[:4] == ["python3", "benchmarks/gpu_campaign.py", verb,
                             "$OUT"]
        assert float(words[words.index("--seconds") + 1]) == \
            call.timeout_s - campaign.MARGIN_SECONDS
        assert call.carry == [] and "pip" not in call.command
        assert len(call.command) <= 2000
    assert campaign.main(["plan"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("## ") == 3 and printed.count("wheels: none") == 3
    for call in campaign.plan():
        assert "\n{}\n".format(call.command) in printed + "\n"
        assert "timeout_s {}".format(call.timeout_s) in printed
    assert "dbl_conv_relu" in measure.what and "60 epochs" in train.what


def test_the_benchmark_is_dbl_conv_relu_first_then_two_models_at_10_and_64():
    assert campaign.BENCH_CASES[:3] == (("dbl_conv_relu", 10),
                                        ("dbl_conv_relu", 64),
                                        ("dbl_conv_relu", 256))
    assert sorted(campaign.BENCH_CASES[3:]) == [
        ("double_fc_dropout", 10), ("double_fc_dropout", 64),
        ("shallow", 10), ("shallow", 64)]
    assert set(campaign.GPU_BACKENDS) <= set(
        __import__("gpunn.bench").bench.BACKENDS)


def case(backend, seconds=1.0, model="dbl_conv_relu", size=10):
    return {"name": "test_epoch_time[{}-{}-{}]".format(model, size, backend),
            "extra_info": {"model": model, "mini_batch_size": size,
                           "backend": backend, "epoch_seconds": seconds}}


def test_results_are_merged_as_they_come_eager_and_graph_apart(tmp_path):
    """Each pytest-benchmark run's finished cases go into NAME-eager.json
    or NAME-graph.json at once (an interrupted case, without
    epoch_seconds, is left out), the first run's machine kept and
    named for each file."""
    machine = {"gpunn": {"gpu_name": "NVIDIA H100", "matmul_gflops": {}}}
    first = {"machine_info": machine, "benchmarks": [
        case("gpunn-cupy"), case("gpunn-cupy-graph"), case("torch-cuda")]}
    assert campaign.merge(first, str(tmp_path), "h100") == [
        "gpunn-cupy", "torch-cuda", "gpunn-cupy-graph"]
    second = {"machine_info": {}, "benchmarks": [
        case("gpunn-cupy", size=64), case("torch-cuda", None, size=64)]}
    assert campaign.merge(second, str(tmp_path), "h100") == ["gpunn-cupy"]
    torch_graph = {"benchmarks": [case("torch-cuda-graph")]}
    assert campaign.merge(torch_graph, str(tmp_path), "h100", "graph") == [
        "torch-cuda-graph"]
    eager = json.loads((tmp_path / "h100-eager.json").read_text())
    graph = json.loads((tmp_path / "h100-graph.json").read_text())
    assert [c["name"] for c in eager["benchmarks"]] == [
        "test_epoch_time[dbl_conv_relu-10-gpunn-cupy]",
        "test_epoch_time[dbl_conv_relu-10-torch-cuda]",
        "test_epoch_time[dbl_conv_relu-64-gpunn-cupy]"]
    assert [c["extra_info"]["backend"] for c in graph["benchmarks"]] == [
        "gpunn-cupy-graph", "torch-cuda-graph"]
    assert eager["machine_info"]["gpunn"]["name"] == "NVIDIA H100 eager"
    assert graph["machine_info"]["gpunn"]["name"] == "NVIDIA H100 graph"
    assert sorted(os.listdir(tmp_path)) == ["h100-eager.json",
                                            "h100-graph.json"]


def test_a_command_is_stopped_at_the_deadline_and_none_starts_after(
        tmp_path, monkeypatch):
    """Ctrl-C at the call's deadline, SIGKILL GRACE_SECONDS later for a
    command that ignores it; what the call had is in OUT/NAME.json at
    each step."""
    monkeypatch.setattr(campaign, "GRACE_SECONDS", 1)
    stage = campaign.Stage("call", str(tmp_path), 1.5, rehearse=True)
    stubborn = [sys.executable, "-c", "import signal, time; "
                "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"]
    start = time.monotonic()
    first = stage.run("stubborn", stubborn)
    assert first["stopped_at_limit"] and first["exit_code"] == -9
    assert time.monotonic() - start < 1.5 + 1 + 2
    assert stage.run("late", [sys.executable, "-c", "pass"], at_least=1) \
        is None
    stage.finish([])
    saved = json.loads((tmp_path / "call.json").read_text())
    assert saved["steps"]["stubborn"]["stopped_at_limit"]
    assert saved["steps"]["late"] == {"skipped": "out of time"}
    assert "stubborn: exit code -9" in (tmp_path / "call.log").read_text()


def test_a_training_run_summary():
    records = [{"seconds": s, "validation_accuracy": v, "test_accuracy": t,
                "cuda_graph": True}
               for s, v, t in ((5.0, 0.97, 0.96), (1.0, 0.98, 0.975),
                               (2.0, 0.975, None), (1.5, 0.979, None))]
    run = campaign.summary(records)
    assert run["epochs"] == 4 and run["cuda_graph"] == [True]
    assert run["first_epoch_seconds"] == 5.0
    assert run["median_epoch_seconds"] == 1.5  # of the epochs after the first
    assert run["projected_60_epoch_seconds"] == 9.5 + 56 * 1.5
    assert (run["best_epoch"], run["best_validation_accuracy"],
            run["its_test_accuracy"]) == (1, 0.98, 0.975)
    assert campaign.summary([])["epochs"] == 0


def test_the_torch_step_is_captured_as_pytorchs_docs_capture_a_network():
    """Warm-up steps on a side stream, then one step captured; each
    replay is the graph's (torch.cuda, stood in for: no GPU here)."""
    calls = []

    class Stream:
        def wait_stream(self, other):
            calls.append("wait")

    class CUDAGraph:
        def replay(self):
            calls.append("replay")

    @contextlib.contextmanager
    def context(_):
        calls.append("enter")
        yield
        calls.append("exit")

    cuda = types.SimpleNamespace(Stream=Stream, current_stream=Stream,
                                 stream=context, CUDAGraph=CUDAGraph,
                                 graph=context)
    replay = campaign._capture(types.SimpleNamespace(cuda=cuda),
                               lambda: calls.append("step"), 3)
    replay()
    assert calls == ["wait", "enter", "step", "step", "step", "exit", "wait",
                     "enter", "step", "exit", "replay"]


@pytest.mark.system
def test_the_gpu_tests_are_the_chosen_ones_on_real_cupy_only():
    """The selection of call 1 collects the real-CuPy variants (and
    torch's cuda ones) of the chosen tests, both float types, the
    dropout model's included, and none of the double's or the CPU's."""
    p = subprocess.run(
        [sys.executable, "-m", "pytest", *campaign.GPU_TESTS, "-m",
         campaign.GPU_TESTS_MARKS, "-k", campaign.GPU_TESTS_KEYWORDS,
         "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=campaign.REPO, env=environment(), capture_output=True, text=True,
        timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    ids = [line for line in p.stdout.splitlines() if "::" in line]
    assert len(ids) > 300
    for node in ids:
        params = node[node.index("["):]
        assert "cupy-double-" not in params and "cupy-double]" not in params
        assert "cupy" in params or params.startswith("[cuda"), node
        assert "expanded_data" not in params
    functions = {node.split("[")[0] for node in ids}
    for name in ("test_gemm_equals_the_product",
                 "test_dropout_equals_the_generic_one",
                 "test_pool_bias_activation_and_its_backward_equal_the_"
                 "generic_ones",
                 "test_training_on_the_fused_kernels_equals_the_generic_path"):
        assert "tests/test_kernels_cuda.py::" + name in functions
    assert "tests/test_cuda_graph.py::test_training_on_the_graph_equals_" \
        "training_eagerly" in functions
    assert {f.split("::")[0] for f in functions} == {
        t.split("::")[0] for t in campaign.GPU_TESTS}
    for model in ("dbl_conv_relu", "double_fc_dropout"):
        for dtype in ("float32", "float64"):
            assert "tests/test_cuda_graph.py::test_training_on_the_graph_" \
                "equals_training_eagerly[{}-cupy-{}]".format(dtype, model) \
                in ids


@pytest.mark.system
def test_rehearsal_of_call_1(tmp_path):
    """On NumPy: the gpu tests collected, the compile time's two short
    trainings, the benchmark's cases (CPU backends, one step a round)
    and the torch graph case (uncaptured), into at most 8 files."""
    p = script("measure", tmp_path, "--rehearse")
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(os.listdir(tmp_path)) == [
        "gpu-tests.xml", "measure.json", "measure.log",
        "rehearsal-eager.json", "rehearsal-graph.json"]
    steps = json.loads((tmp_path / "measure.json").read_text())["steps"]
    assert steps["versions"]["numpy"]
    assert steps["gpu tests"]["exit_code"] == 0
    assert steps["gpu tests"]["selected"] > 300
    assert steps["first epoch cold"]["epoch_seconds"] > 0
    assert isinstance(steps["compile seconds"], float)
    assert steps["bench dbl_conv_relu 10"]["cases"] == ["gpunn-numpy",
                                                        "torch-cpu"]
    assert steps["torch graph dbl_conv_relu 10"]["captured"] is False
    eager = json.loads((tmp_path / "rehearsal-eager.json").read_text())
    assert [(c["extra_info"]["model"], c["extra_info"]["backend"])
            for c in eager["benchmarks"]] == [
                ("dbl_conv_relu", "gpunn-numpy"),
                ("dbl_conv_relu", "torch-cpu"), ("shallow", "gpunn-numpy"),
                ("shallow", "torch-cpu")]
    assert eager["machine_info"]["gpunn"]["matmul_gflops"]["cpu"] > 0
    graph = json.loads((tmp_path / "rehearsal-graph.json").read_text())
    info = graph["benchmarks"][0]["extra_info"]
    assert info["backend"] == "torch-cpu-uncaptured" and \
        info["epoch_seconds"] > 0 and info["fraction_of_matmul_peak"] > 0
    assert "dbl_conv_relu 10 gpunn-numpy:" in p.stdout.split("== measure")[1]


@pytest.mark.system
def test_a_rehearsal_of_call_1_cut_short_keeps_what_it_had(tmp_path):
    p = script("measure", tmp_path, "--rehearse", "--seconds", 8)
    assert p.returncode == 0, p.stdout + p.stderr
    results = json.loads((tmp_path / "measure.json").read_text())
    assert results["seconds"] < 8 + campaign.GRACE_SECONDS + 5
    assert results["steps"]["gpu tests"]["exit_code"] == 0
    assert results["steps"]["bench dbl_conv_relu 10"] == {
        "skipped": "out of time"}
    assert len(os.listdir(tmp_path)) <= OUT_FILES


@pytest.mark.system
def test_rehearsal_of_call_2_stops_cleanly_at_its_deadline(tmp_path):
    """gpunn train on NumPy with a few images, stopped with Ctrl-C at
    the deadline (unless all 60 epochs ended first): its run folder in
    OUT with a checkpoint and log.jsonl's epochs, the summary in
    train.json.  28 s leaves gpunn train about 11 (the rest is the
    versions step and the grace after Ctrl-C): on a loaded 2-core machine
    its start and first epoch took more than the 3 s that 20 s left it.
    All 60 epochs of its few images may end first (11-18 s here)."""
    seconds = 28
    p = script("train", tmp_path, "--rehearse", "--seconds", seconds)
    assert p.returncode == 0, p.stdout + p.stderr
    results = json.loads((tmp_path / "train.json").read_text())
    command, run = results["steps"]["gpunn train"], results["steps"]["run"]
    assert results["seconds"] < seconds + 5
    if command["stopped_at_limit"]:
        assert command["exit_code"] == 130 and 1 <= run["epochs"] < 60
    else:
        assert command["exit_code"] == 0 and run["epochs"] == 60
    assert len(run["validation_accuracy"]) == run["epochs"]
    assert run["median_epoch_seconds"] > 0
    assert sorted(os.listdir(tmp_path / "run")) == [
        "log.jsonl", "network.npz", "run.json"]
    assert len(os.listdir(tmp_path)) + 2 <= OUT_FILES
    assert "of 60 epochs" in p.stdout


@pytest.mark.system
def test_bad_arguments():
    p = script("measure")
    assert p.returncode == 2 and "out" in p.stderr
    p = script("torch-graph", "--result-file", "/tmp/x.json", "--model",
               "shallow", "--size", "ten")
    assert p.returncode == 2 and "invalid int" in p.stderr
