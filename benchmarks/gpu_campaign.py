"""gpu_campaign.py
~~~~~~~~~~~~~~~~~~

The GPU campaign (issue 22): what one lent GPU should answer, in two
device calls that fit its 15 minutes of device time with two machine
starts (2 minutes each, the pessimistic figure).  Each call is one
command with its own deadline (``--seconds``): it stops what runs with
Ctrl-C before the device tool's ``timeout_s`` and writes every result
into OUT as soon as it exists, so a call cut short still returns what
it had (at most 8 files come back from ``$OUT``).

Here, on any machine (no GPU needed):

    python3 benchmarks/gpu_campaign.py plan   the calls, their timeout_s, carry

On the GPU machine, from the repository root (``plan`` prints them whole):

    measure OUT   call 1: versions and nvidia-smi; GPU_TESTS, the gpu tests
                  that prove the device right (real CuPy only); the first
                  epoch's compile time (cold, then warm, kernel cache); the
                  suite's BENCH_CASES on gpunn-cupy, gpunn-cupy-graph and
                  torch-cuda, and torch-cuda captured with torch.cuda.graphs
                  where it captures (TORCH_GRAPH_MODELS)
    train OUT     call 2: gpunn train dbl_conv_relu with the book's settings,
                  on the graph path, for as many of its 60 epochs as fit

``--rehearse`` runs a call on the CPU: NumPy and a few images, the gpu
tests collected only.  tests/test_gpu_campaign.py rehearses both calls,
so that the GPU's minutes go to measuring.
"""

import argparse
import collections
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script: the checkout's gpunn
    sys.path.insert(0, REPO)

# ---------------------------------------------------------------- the plan

#: A device call: its command (run in the repository root), the device
#: tool's ``timeout_s`` for it, and the ignored paths it carries.
Call = collections.namedtuple("Call", "name command timeout_s carry what")
DEVICE_SECONDS = 15 * 60  # a lent GPU's device time, starts included
START_SECONDS = 120  # a machine's start, the pessimistic figure
STARTS = 2  # a fix between the calls lets the first machine go back
#: After a command's deadline: Ctrl-C, then this long to write its
#: results before it is killed; the deadline leaves MARGIN_SECONDS of
#: the call's timeout_s for that and for the campaign's own last files.
GRACE_SECONDS = 15
MARGIN_SECONDS = 30
MEASURE_TIMEOUT, TRAIN_TIMEOUT = 420, 210
SCRIPT = "python3 benchmarks/gpu_campaign.py"
CALLS = (
    Call("call 1", "{} measure $OUT --seconds {}".format(
        SCRIPT, MEASURE_TIMEOUT - MARGIN_SECONDS), MEASURE_TIMEOUT, [],
        "versions, nvidia-smi; the chosen gpu tests (~2 min); the first "
        "epoch's compile time; dbl_conv_relu at 10, 64, 256 on gpunn-cupy, "
        "gpunn-cupy-graph, torch-cuda and torch-cuda-graph (peak memory, "
        "matmul rate); then double_fc_dropout and shallow at 10, 64"),
    Call("call 2", "{} train $OUT --seconds {}".format(
        SCRIPT, TRAIN_TIMEOUT - MARGIN_SECONDS), TRAIN_TIMEOUT, [],
        "gpunn train dbl_conv_relu, the book's settings, on the graph path: "
        "seconds per epoch and the accuracy curve, as many of its 60 epochs "
        "as fit (checkpoint each epoch)"))
#: Call 2 where call 1 found a failure: after the fix (made here, on the
#: CPU), the same measurements again, as far as call 2's time goes.
RERUN = Call("call 2 instead, if call 1 found a failure",
             "{} measure $OUT --seconds {}".format(
                 SCRIPT, TRAIN_TIMEOUT - MARGIN_SECONDS), TRAIN_TIMEOUT, [],
             "after the fix: the gpu tests again, then the compile time and "
             "dbl_conv_relu's benchmark as far as the deadline goes")

#: The gpu tests of call 1: fused kernels against the generic path, the
#: gemm, the dropout masks (and Philox's known answers), graph against
#: eager, numpy against cupy, and the PyTorch peer on CUDA (the
#: benchmark's yardstick).  Their real-CuPy variants only: ids with
#: "cupy" (or torch's "cuda"), not the double's "cupy-double-..." or
#: "...-cupy-double]" (a plain "not cupy-double" would also drop
#: "cupy-double_fc_dropout", the dropout model's real variant), and not
#: the expanded-data models (the same layers in other sizes).  327 tests,
#: sized on their CuPy-double variants here (the same selection with
#: "cupy-double"): 88 s on 2 busy cores, 40 s of it CPU time; the GPU's
#: share of that is NVRTC's compiles and a few hundred small launches.
GPU_TESTS = (
    "tests/test_kernels_cuda.py",
    "tests/test_cuda_graph.py",
    "tests/test_kernels.py::test_dropout_keeps_what_philox_says",
    "tests/test_kernels.py::test_philox_gives_random123s_known_answers",
    "tests/test_backends.py::test_numpy_and_cupy_agree",
    "tests/test_torch_peer.py::test_sgd_steps_equal_in_float32",
    "tests/test_torch_peer.py::"
    "test_gradients_with_the_same_dropout_masks_equal")
GPU_TESTS_MARKS = "gpu and not slow"
GPU_TESTS_KEYWORDS = ("(cupy or cuda) and not cupy-double- and not "
                      "cupy-double] and not expanded_data")
#: The most each step of call 1 may take, in seconds (the deadline may
#: cut it sooner).
LIMITS = {"nvidia-smi": 20, "gpu tests": 150, "first epoch cold": 45,
          "first epoch warm": 30, "bench case": 60, "torch graph case": 40}
MIN_START = 15  # seconds left under which no benchmark case starts
#: The benchmark of call 1, in order: (model, mini-batch size), each one
#: pytest-benchmark run of GPU_BACKENDS, merged into the results at once.
BENCH_CASES = (("dbl_conv_relu", 10), ("dbl_conv_relu", 64),
               ("dbl_conv_relu", 256), ("double_fc_dropout", 10),
               ("double_fc_dropout", 64), ("shallow", 10), ("shallow", 64))
GPU_BACKENDS = ("gpunn-cupy", "gpunn-cupy-graph", "torch-cuda")
TORCH_GRAPH_MODELS = ("dbl_conv_relu",)
#: The rehearsal's: the same steps on the CPU backends, fewer cases.
REHEARSAL_CASES = (("dbl_conv_relu", 10), ("shallow", 10))
CPU_BACKENDS = ("gpunn-numpy", "torch-cpu")
REHEARSAL = ["--limit", "1000", "--eval-limit", "100"]
TRAIN_MODEL, BOOK_EPOCHS, GOAL_SECONDS = "dbl_conv_relu", 60, 30


def ctrl_c_as_at_a_terminal():
    """The steps' ``preexec_fn``: SIGINT at its default in each step, so
    that the Ctrl-C at its time limit stops it cleanly, even where this
    script was started with SIGINT ignored (``cmd &`` in a shell, which
    the step would inherit: then only the SIGKILL would stop it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def plan():
    """The calls in order, then the one that replaces call 2 where call
    1 found a failure."""
    return list(CALLS) + [RERUN]


def planned_seconds():
    """The device time the plan may take: the calls' limits and the
    machine starts."""
    return sum(call.timeout_s for call in CALLS) + STARTS * START_SECONDS


def print_plan(say=print):
    say("The GPU campaign (issue 22): two device calls, each one command "
        "with its own deadline (--seconds; it stops itself {} s before "
        "timeout_s and writes what it has to $OUT). Run call 1, fetch, "
        "give_back; then call 2. No wheels: neither call needs Dask; "
        "carry nothing (MNIST is tracked, so it travels).".format(
            MARGIN_SECONDS))
    for call in plan():
        say("\n## {} (timeout_s {}: at most {:.1f} min)\n{}\ncarry: {}\n"
            "wheels: none\n{}".format(call.name, call.timeout_s,
                                      call.timeout_s / 60, call.what,
                                      json.dumps(call.carry), call.command))
    say("\nDevice time: {} s + {} s of calls + {} starts of {} s = {:.1f} "
        "of {} minutes.".format(CALLS[0].timeout_s, CALLS[1].timeout_s,
                                STARTS, START_SECONDS,
                                planned_seconds() / 60, DEVICE_SECONDS // 60))


# ---------------------------------------------------------------- a call

class Stage:
    """A call's folder OUT: its log (OUT/NAME.log, every command's output)
    and its results (OUT/NAME.json, rewritten after each step), and the
    commands it runs, each stopped at the call's deadline."""

    def __init__(self, name, out, seconds, rehearse):
        os.makedirs(out, exist_ok=True)
        self.name, self.out, self.rehearse = name, out, rehearse
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.log = open(os.path.join(out, name + ".log"), "a")
        self.results = {"call": name, "rehearsal": rehearse,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "deadline_seconds": seconds, "steps": {}}

    def left(self):
        return self.deadline - time.monotonic()

    def say(self, line):
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def record(self, step, value):
        """Keep ``value`` as the step's result, in OUT/NAME.json now."""
        self.results["steps"][step] = value
        self.save()

    def save(self):
        self.results["seconds"] = round(self.seconds - self.left(), 1)
        path = os.path.join(self.out, self.name + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.results, f, indent=1)
        os.replace(path + ".tmp", path)

    def run(self, step, command, seconds=None, env=None, at_least=1):
        """Run ``command`` (its output into the log) for at most
        ``seconds`` and never past the deadline: then Ctrl-C (SIGINT:
        pytest and gpunn stop cleanly, writing what they have), and
        SIGKILL GRACE_SECONDS later.  Not started with less than
        ``at_least`` seconds left.  Records and returns {command,
        exit_code, seconds, stopped_at_limit}, or None if not started."""
        limit = min(seconds or self.left(), self.left())
        if limit < at_least:
            self.say("{}: not started, {:.0f} s left".format(step,
                                                             self.left()))
            self.record(step, {"skipped": "out of time"})
            return None
        self.say("$ {}".format(shlex.join(command)))
        start = time.monotonic()
        child = subprocess.Popen(command, cwd=REPO, stdout=self.log,
                                 stderr=subprocess.STDOUT,
                                 env=dict(os.environ, PYTHONUNBUFFERED="1",
                                          **(env or {})),
                                 start_new_session=True,
                                 preexec_fn=ctrl_c_as_at_a_terminal)
        stopped = False
        try:
            child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        result = {"command": command, "exit_code": child.returncode,
                  "seconds": round(time.monotonic() - start, 1),
                  "stopped_at_limit": stopped}
        self.record(step, result)
        self.say("{}: exit code {} after {} s{}".format(
            step, child.returncode, result["seconds"],
            " (stopped at its time limit)" if stopped else ""))
        return result

    def finish(self, table):
        """Save the results; print ``table`` (lines) last: the device
        tool's reply carries the end of the output."""
        self.save()
        self.log.close()
        print("\n".join(["", "== {} ({} s of {})".format(
            self.name, self.results["seconds"], self.seconds)] + table))
        return 0


def versions():
    found = {"python": platform.python_version(),
             "machine": platform.machine()}
    for name in ("numpy", "cupy", "torch", "numba", "pytest"):
        try:
            found[name] = __import__(name).__version__
        except Exception as e:  # absent, or no driver
            found[name] = "not usable: {}".format(_first_line(e))
    try:
        import cupy
        found["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        found["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        found["gpu"] = name.decode() if isinstance(name, bytes) else name
    except Exception as e:
        found["gpu"] = "none: {}".format(_first_line(e))
    from gpunn.bench.machine import nvidia_driver_version
    found["nvidia_driver"] = nvidia_driver_version()
    return found


def _first_line(e):
    return str(e).splitlines()[0] if str(e) else type(e).__name__


# ---------------------------------------------------------------- call 1

def measure(out, seconds, rehearse=False):
    """Call 1 (or call 2 after a fix) into OUT: measure.log, measure.json,
    gpu-tests.xml, NAME-eager.json and NAME-graph.json (the suite's
    result files, NAME the GPU's)."""
    stage = Stage("measure", out, seconds, rehearse)
    found = versions()
    stage.record("versions", found)
    stage.say(json.dumps(found))
    if not rehearse:
        stage.run("nvidia-smi", ["nvidia-smi"], LIMITS["nvidia-smi"])
    gpu_tests(stage)
    first_epoch(stage)
    name = "rehearsal" if rehearse else _slug(found.get("gpu", "gpu"))
    cases = REHEARSAL_CASES if rehearse else BENCH_CASES
    for model, size in cases:
        bench_case(stage, model, size, name)
        if model in TORCH_GRAPH_MODELS:
            torch_graph_case(stage, model, size, name)
    return stage.finish(measure_table(stage, name))


def gpu_tests(stage):
    """GPU_TESTS on real CuPy (collected only, in a rehearsal), their
    outcome into OUT/gpu-tests.xml and the summary into the results."""
    xml = os.path.join(os.path.abspath(stage.out), "gpu-tests.xml")
    command = [sys.executable, "-m", "pytest", *GPU_TESTS, "-m",
               GPU_TESTS_MARKS, "-k", GPU_TESTS_KEYWORDS, "-v", "-rfE",
               "-p", "no:cacheprovider", "--junitxml", xml]
    if stage.rehearse:
        command.append("--collect-only")
    offset = stage.log.tell()
    result = stage.run("gpu tests", command, LIMITS["gpu tests"])
    if result is not None:
        with open(stage.log.name) as f:
            f.seek(offset)
            selected = re.search(r"collected \d+ items / \d+ deselected / "
                                 r"(\d+) selected", f.read())
        result["selected"] = int(selected.group(1)) if selected else None
        result["summary"] = _junit_summary(xml)
        stage.record("gpu tests", result)


def _junit_summary(path):
    """{tests, failures, errors, skipped, failed: [node ids]} of a JUnit
    file, or None where there is none (a rehearsal collects only)."""
    import xml.etree.ElementTree as ElementTree
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    summary = {k: int(suite.get(k, 0)) for k in ("tests", "failures",
                                                  "errors", "skipped")}
    summary["failed"] = [case.get("classname", "") + "::" + case.get("name")
                         for case in suite.iter("testcase")
                         if case.find("failure") is not None or
                         case.find("error") is not None]
    return summary


def first_epoch(stage):
    """The first epoch's compile time: dbl_conv_relu trained one short
    epoch with an empty CuPy kernel cache, then again with it full; the
    difference of the epochs' own seconds (log.jsonl's)."""
    with tempfile.TemporaryDirectory(prefix="gpunn-campaign-") as scratch:
        epochs = _first_epochs(stage, scratch)
    if len(epochs) == 2:
        stage.record("compile seconds", round(epochs["cold"] -
                                              epochs["warm"], 2))


def _first_epochs(stage, scratch):
    """{"cold": seconds, "warm": seconds} of the two trainings' epochs."""
    train = [sys.executable, "-m", "gpunn", "train", TRAIN_MODEL,
             "--epochs", "1", "--quiet", "--seed", "1",
             "--backend", "numpy" if stage.rehearse else "cupy"] + (
                 REHEARSAL if stage.rehearse else
                 ["--limit", "2000", "--eval-limit", "500"])
    epochs = {}
    for when in ("cold", "warm"):
        folder = os.path.join(scratch, when)
        step = "first epoch " + when
        result = stage.run(step, train + ["--out", folder], LIMITS[step],
                           env={"CUPY_CACHE_DIR": os.path.join(scratch,
                                                               "cache")})
        records = _records(folder)
        if result is not None and records:
            epochs[when] = round(records[0]["seconds"], 2)
            result["epoch_seconds"] = epochs[when]
            stage.record(step, result)
    return epochs


def _records(folder):
    """The complete epochs of the run in ``folder`` (gpunn.run_folder)."""
    from gpunn.run_folder import RunFolder
    return RunFolder(folder).complete_records()


def bench_case(stage, model, size, name):
    """The suite's ``model`` at ``size`` on the GPU backends (the CPU's in
    a rehearsal, one step a round): one pytest-benchmark run, its
    complete cases merged into OUT/NAME-eager.json and -graph.json."""
    backends = CPU_BACKENDS if stage.rehearse else GPU_BACKENDS
    nodes = ["benchmarks/test_epoch_time.py::test_epoch_time[{}-{}-{}]"
             .format(model, size, b) for b in backends]
    command = [sys.executable, "-m", "pytest", *nodes, "-q", "-p",
               "no:cacheprovider", "-o", "addopts=", "--benchmark-enable"] + \
        (["--steps", "1"] if stage.rehearse else [])
    step = "bench {} {}".format(model, size)
    result, doc = _run_for_result(stage, step, command, "--benchmark-json",
                                  LIMITS["bench case"])
    if doc is not None:
        result["cases"] = merge(doc, stage.out, name)
        stage.record(step, result)


def _run_for_result(stage, step, command, option, seconds):
    """``stage.run`` of ``command`` + [option, a scratch file]; returns
    its record and the JSON it wrote there (None where none)."""
    with tempfile.TemporaryDirectory(prefix="gpunn-campaign-") as scratch:
        path = os.path.join(scratch, "result.json")
        result = stage.run(step, command + [option, path], seconds,
                           at_least=MIN_START)
        if result is None or not os.path.exists(path):
            return result, None
        with open(path) as f:
            return result, json.load(f)


def merge(doc, out, name, only=None):
    """Add the complete cases of the pytest-benchmark result ``doc`` to
    OUT/NAME-eager.json or OUT/NAME-graph.json by backend, or all to the
    file of ``only`` ("eager" or "graph"), each rewritten whole: a result
    file each for ``gpunn bench compare``, whose report keeps one gpunn
    and one torch case per model, size and device.  Returns the backends
    added."""
    added = []
    for kind, cases in split_cases(doc, only).items():
        if not cases:
            continue
        path = os.path.join(out, "{}-{}.json".format(name, kind))
        if os.path.exists(path):
            with open(path) as f:
                merged = json.load(f)
        else:
            merged = {k: v for k, v in doc.items() if k != "benchmarks"}
            merged["benchmarks"] = []
            gpunn_info = merged.setdefault("machine_info", {}).setdefault(
                "gpunn", {})
            label = gpunn_info.get("gpu_name") or name
            gpunn_info["name"] = "{} {}".format(label, kind)
        merged["benchmarks"] += cases
        with open(path + ".tmp", "w") as f:
            json.dump(merged, f, indent=1)
        os.replace(path + ".tmp", path)
        added += [case["extra_info"]["backend"] for case in cases]
    return added


def split_cases(doc, only=None):
    """``{"eager": [...], "graph": [...]}``: the cases of ``doc`` that
    finished (an interrupted one has no epoch_seconds), by whether the
    backend's step was captured ("...-graph"), or all under ``only``."""
    kinds = {"eager": [], "graph": []}
    for case in doc.get("benchmarks", []):
        info = case.get("extra_info") or {}
        if info.get("epoch_seconds") is None:
            continue
        graph = info.get("backend", "").endswith("-graph")
        kinds[only or ("graph" if graph else "eager")].append(case)
    return kinds


def torch_graph_case(stage, model, size, name):
    """The PyTorch peer's step captured with torch.cuda.graphs (this
    script's ``torch-graph``, a process of its own: a failed capture
    can leave CUDA unusable), merged into OUT/NAME-graph.json."""
    command = [sys.executable, os.path.abspath(__file__), "torch-graph",
               "--model", model, "--size", str(size)] + \
        (["--rehearse"] if stage.rehearse else [])
    step = "torch graph {} {}".format(model, size)
    result, doc = _run_for_result(stage, step, command, "--result-file",
                                  LIMITS["torch graph case"])
    if doc is None:
        return
    case = doc["benchmarks"][0]
    result["captured"] = case["extra_info"]["captured"]
    result["error"] = case["extra_info"].get("error")
    if case["extra_info"].get("epoch_seconds") is not None:
        _rate_against_peak(case["extra_info"], stage.out, name)
        result["cases"] = merge(doc, stage.out, name, "graph")
    stage.record(step, result)


def _rate_against_peak(info, out, name):
    """``fraction_of_matmul_peak`` of a torch-graph case, from the GPU
    matmul rate that the suite measured (OUT/NAME-eager.json)."""
    from gpunn.bench.machine import fraction_of_peak
    try:
        with open(os.path.join(out, name + "-eager.json")) as f:
            rates = json.load(f)["machine_info"]["gpunn"]["matmul_gflops"]
    except (OSError, KeyError, ValueError):
        rates = {}
    rate = rates.get("cpu" if info["device"] == "cpu" else "gpu")
    info["fraction_of_matmul_peak"] = fraction_of_peak(
        info["achieved_gflops"], rate)


def measure_table(stage, name):
    """The short table printed last: each step's outcome, and each
    benchmark case's seconds per epoch and peak memory."""
    lines = []
    for step, value in stage.results["steps"].items():
        if step == "versions":
            lines.append("gpu: {}".format(value.get("gpu")))
        elif isinstance(value, dict) and "exit_code" in value:
            summary = value.get("summary")
            lines.append("{}: exit {} in {} s{}{}{}{}".format(
                step, value["exit_code"], value["seconds"],
                " (stopped)" if value["stopped_at_limit"] else "",
                "; {} selected".format(value["selected"])
                if "selected" in value else "",
                "; {tests} tests, {failures} failed, {errors} errors, "
                "{skipped} skipped {failed}".format(**summary)
                if summary else "",
                "; captured {} {}".format(value["captured"],
                                          value["error"] or "")
                if "captured" in value else ""))
        else:
            lines.append("{}: {}".format(step, value))
    for kind in ("eager", "graph"):
        path = os.path.join(stage.out, "{}-{}.json".format(name, kind))
        if os.path.exists(path):
            with open(path) as f:
                for case in json.load(f)["benchmarks"]:
                    i = case["extra_info"]
                    peak = i.get("peak_memory_mib")
                    lines.append("{model} {mini_batch_size} {backend}: "
                                 "{epoch_seconds:.3g} s/epoch, peak {peak}"
                                 .format(peak="-" if peak is None else
                                         "{:.0f} MiB".format(peak), **i))
    return lines


# ---------------------------------------------------------------- torch graphs

def torch_graph(result_file, model, size, rehearse=False):
    """One case in the suite's form (benchmarks/test_epoch_time.py: the
    same warm-up, rounds and steps; its extra_info) for the PyTorch peer
    with its training step captured by torch.cuda.graphs: each step
    copies the mini-batch into the captured step's own input tensors and
    replays it.  Where the capture fails, the case records why and no
    time.  A rehearsal (CPU: no capture) runs the same step uncaptured."""
    import torch
    import gpunn
    from benchmarks import torch_peer
    from benchmarks.test_epoch_time import ROUNDS, WARMUP_STEPS
    from gpunn.bench.flops import EPOCH_IMAGES, flops_per_epoch
    from gpunn.bench.machine import peak_memory_mib, reset_peak_memory
    from gpunn.experiments import EXPERIMENTS
    device = "cpu" if rehearse else "cuda"
    experiment = EXPERIMENTS[model]
    gpunn.use("numpy", "float32", seed=0)
    (x, y), _, _ = gpunn.load_data()
    net = experiment.network(size)
    torch.backends.cudnn.allow_tf32 = False  # as the suite: equal precision
    torch.backends.cuda.matmul.allow_tf32 = False
    memory = {} if rehearse else {"torch": torch}
    baseline = reset_peak_memory(**memory)
    peer = torch_peer.TorchNet.from_gpunn(net, device=device)
    x, y = peer._inputs(x), peer._labels(y)  # the whole set, on the device
    epoch_steps = EPOCH_IMAGES // size
    batch_x, batch_y = x[:size].clone(), y[:size].clone()  # the step's own

    def train_step():
        peer.train_step(batch_x, batch_y, experiment.eta, experiment.lmbda,
                        epoch_steps)

    info = {"model": model, "mini_batch_size": size, "framework": "torch",
            "device": device, "backend": "torch-cpu-uncaptured" if rehearse
            else "torch-cuda-graph", "load": "quiet", "dtype": "float32",
            "epoch_steps": epoch_steps, "captured": False}
    try:
        replay = train_step if rehearse else _capture(torch, train_step,
                                                      WARMUP_STEPS)
        info["captured"] = not rehearse
    except Exception as e:  # where it does not capture: say why
        info["error"] = "{}: {}".format(type(e).__name__, _first_line(e))
        replay = None

    def step(i):
        b = slice(i % epoch_steps * size, (i % epoch_steps + 1) * size)
        batch_x.copy_(x[b])
        batch_y.copy_(y[b])
        replay()

    rounds, steps = [], 1 if rehearse else max(5, 2000 // size)
    if replay is not None:
        rounds = _timed_rounds(step, steps, ROUNDS, WARMUP_STEPS,
                               lambda: torch_peer.synchronize(device))
    peak, kind = peak_memory_mib(baseline, **memory)
    info.update(steps=steps, peak_memory_mib=peak, peak_memory_kind=kind,
                flops_per_epoch=flops_per_epoch(experiment.network(size),
                                                size))
    median = statistics.median(rounds) if rounds else None
    if median:
        info["epoch_seconds"] = median / steps * epoch_steps
        info["achieved_gflops"] = info["flops_per_epoch"] / \
            info["epoch_seconds"] / 1e9
    doc = {"benchmarks": [{
        "name": "torch_cuda_graph[{}-{}]".format(model, size),
        "group": "{} mini-batch {}".format(model, size),
        "stats": {"median": median, "rounds": len(rounds), "data": rounds},
        "extra_info": info}]}
    with open(result_file, "w") as f:
        json.dump(doc, f, indent=1)
    return 0


def _capture(torch, train_step, warmup_steps):
    """``train_step`` captured as a CUDA graph, as PyTorch's docs do a
    whole network: warm-up steps on a side stream, then the capture;
    returns the graph's ``replay``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup_steps):
            train_step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        train_step()
    return graph.replay


def _timed_rounds(step, steps, rounds, warmup_steps, synchronize):
    """Seconds of each of ``rounds`` rounds of ``steps`` consecutive
    steps (after ``warmup_steps``), each ended by ``synchronize``."""
    for i in range(warmup_steps):
        step(i)
    synchronize()
    times, first = [], warmup_steps
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(first, first + steps):
            step(i)
        synchronize()
        times.append(time.perf_counter() - start)
        first += steps
    return times


# ---------------------------------------------------------------- call 2

def train(out, seconds, rehearse=False):
    """Call 2 into OUT: ``gpunn train dbl_conv_relu`` with the book's
    settings (60 epochs, mini-batch 10, eta 0.03, lmbda 0.1; on CuPy the
    graph path, the default at mini-batch 10), its run folder OUT/run
    (log.jsonl and the checkpoint after every epoch), stopped with Ctrl-C
    at the deadline; train.log and train.json (seconds per epoch, the
    accuracy curve)."""
    stage = Stage("train", out, seconds, rehearse)
    stage.record("versions", versions())
    folder = os.path.join(os.path.abspath(out), "run")
    command = [sys.executable, "-m", "gpunn", "train", TRAIN_MODEL,
               "--seed", "1", "--out", folder, "--backend",
               "numpy" if rehearse else "cupy"] + (REHEARSAL if rehearse
                                                   else [])
    # The deadline is the call's: after Ctrl-C, the time to save.
    stage.run("gpunn train", command, stage.left() - GRACE_SECONDS)
    stage.record("run", summary(_records(folder)))
    return stage.finish(train_table(stage.results["steps"]["run"]))


def summary(records):
    """What call 2 answers, from the run's epochs (log.jsonl)."""
    seconds = [r["seconds"] for r in records]
    done = len(records)
    result = {"epochs": done, "of": BOOK_EPOCHS,
              "cuda_graph": sorted({r.get("cuda_graph") for r in records},
                                   key=str),
              "epoch_seconds": [round(s, 3) for s in seconds],
              "validation_accuracy": [r["validation_accuracy"]
                                      for r in records],
              "test_accuracy": [r["test_accuracy"] for r in records],
              "goal_seconds_for_60_epochs": GOAL_SECONDS}
    if done:
        later = statistics.median(seconds[1:] or seconds)
        best = max(range(done),
                   key=lambda k: records[k]["validation_accuracy"])
        result.update(
            first_epoch_seconds=round(seconds[0], 3),
            median_epoch_seconds=round(later, 3),
            projected_60_epoch_seconds=round(
                sum(seconds) + later * max(BOOK_EPOCHS - done, 0), 1),
            best_validation_accuracy=records[best]["validation_accuracy"],
            its_test_accuracy=records[best]["test_accuracy"],
            best_epoch=best)
    return result


def train_table(run):
    lines = ["{} of {} epochs on cuda_graph {}".format(
        run["epochs"], run["of"], run["cuda_graph"])]
    if run["epochs"]:
        lines.append("first epoch {} s, then {} s per epoch (median): the "
                     "60 epochs in about {} s (goal {} s)".format(
                         run["first_epoch_seconds"],
                         run["median_epoch_seconds"],
                         run["projected_60_epoch_seconds"], GOAL_SECONDS))
        lines.append("best validation accuracy {:.2%} (epoch {}), test "
                     "{:.2%}".format(run["best_validation_accuracy"],
                                     run["best_epoch"],
                                     run["its_test_accuracy"]))
    return lines


def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="call", required=True)
    commands.add_parser("plan")
    for name, default in (("measure", CALLS[0]), ("train", CALLS[1])):
        c = commands.add_parser(name)
        c.add_argument("out")
        c.add_argument("--seconds", type=float, default=default.timeout_s -
                       MARGIN_SECONDS, help="the call's deadline (default "
                       "%(default)s s, {} s before its timeout_s)".format(
                           MARGIN_SECONDS))
        c.add_argument("--rehearse", action="store_true",
                       help="on the CPU, with NumPy and a few images")
    c = commands.add_parser("torch-graph", help="one torch-cuda-graph case "
                            "(call 1 runs it)")
    c.add_argument("--result-file", required=True)
    c.add_argument("--model", required=True)
    c.add_argument("--size", type=int, required=True)
    c.add_argument("--rehearse", action="store_true")
    args = p.parse_args(argv)
    if args.call == "plan":
        return print_plan() or 0
    if args.call == "torch-graph":
        return torch_graph(args.result_file, args.model, args.size,
                           args.rehearse)
    run = measure if args.call == "measure" else train
    return run(args.out, args.seconds, args.rehearse)


if __name__ == "__main__":
    sys.exit(main())
