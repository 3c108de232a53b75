"""Seconds per 50,000-image training epoch of each chapter-6 model, for
each backend (gpunn on NumPy and CuPy, on CuPy both eager and with the
step captured as a CUDA graph, "gpunn-cupy-graph"; the PyTorch peer on
CPU and CUDA) and mini-batch size (10, the book's; 64; 256).

How the epoch time is obtained: after a warm-up of 3 steps, each timed
round runs ``steps`` consecutive training steps (the body of network3's
SGD loop: forward, backward, update, on mini-batches of real MNIST that
already sit on the device) and then synchronizes the device; the median
round, divided by ``steps`` and multiplied by the 50,000 // mini-batch
steps of an epoch, is the epoch time.  Evaluation on the validation and
test sets is not included.  float32, as in the book's GPU runs.

Run (about 5 minutes on 2 cores, CPU only; one JSON file per machine)::

    python -m pytest benchmarks --benchmark-enable \\
        --benchmark-json=benchmarks/results/NAME.json
    python -m gpunn.bench.report benchmarks/results/*.json

Without ``--benchmark-enable`` (the default test run disables timing)
every case runs one untimed step, so the suite cannot rot.

Contention (``test_epoch_time_next_to_a_busy_process``): dbl_conv_relu
on the CPU backends again, next to one other process that keeps a core
busy (``while True: pass``), as a laptop's browser or compiler would.
Each timed round runs with it busy; before each, the process is stopped
(SIGSTOP) for a quiet round of the same steps, timed too.  The case's
``load`` is "busy" (the others': "quiet"); ``epoch_seconds`` is from
the busy rounds and ``quiet_epoch_seconds`` from the quiet ones between
them, and the report gives their ratio: side by side, so that the
machine's drift does not enter it.

Each case records ``peak_memory_mib`` and ``peak_memory_kind``: on the
GPU, the device memory the library's caching allocator reserved at its
highest during the case (the whole training set on the device included),
after giving back the cached blocks of earlier cases; the kind says whose
("cupy pool reserved" or "torch reserved"), None on the CPU.  See
``gpunn/bench/machine.py`` for how each is measured.  A case's
``fraction_of_matmul_peak`` is None where the machine's matmul rate on
that device could not be measured.
"""

import signal
import statistics
import subprocess
import sys
import time

import pytest

import gpunn
from gpunn.compute import backend, cuda_graph
from gpunn.bench.flops import EPOCH_IMAGES, flops_per_epoch
from gpunn.bench.machine import (cupy_or_none, fraction_of_peak, machine,
                                 peak_memory_mib, reset_peak_memory)
from gpunn.experiments import EXPERIMENTS

MINI_BATCH_SIZES = (10, 64, 256)
BACKENDS = ("gpunn-numpy", "gpunn-cupy", "gpunn-cupy-graph", "torch-cpu",
            "torch-cuda")
ROUNDS, WARMUP_STEPS = 5, 3


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST training images and labels, on the host."""
    gpunn.use("numpy", "float32")
    (x, y), _, _ = gpunn.load_data()
    return x, y


def trainer(name, experiment, mini_batch_size, x, y):
    """Return ``(step, synchronize)`` for one backend: ``step(i)`` trains
    on the i-th mini-batch of ``x``, ``y``."""
    framework, device = name.split("-")[:2]
    gpunn.use("cupy" if device == "cupy" else "numpy", "float32", seed=0)
    net = experiment.network(mini_batch_size)
    n_batches = EPOCH_IMAGES // mini_batch_size
    eta, lmbda = experiment.eta, experiment.lmbda
    batches = [slice(k * mini_batch_size, (k + 1) * mini_batch_size)
               for k in range(n_batches)]

    if name == "gpunn-cupy-graph":  # SGD's captured step (cuda_graph.py)
        x, y = net._checked_data((x, y), "training_data")
        captured = cuda_graph.CapturedStep(net, x, y, eta, lmbda, n_batches)

        def step(i):
            if i % n_batches == 0:
                captured.start_epoch()
            captured.step(i % n_batches)
        return step, backend.synchronize

    if framework == "gpunn":
        x, y = net._inputs(x), net._labels(y)  # the whole set, on the device

        def step(i):
            b = batches[i % n_batches]
            net._update(x[b], y[b], eta, lmbda, n_batches)
        return step, backend.synchronize

    from benchmarks import torch_peer
    import torch
    # Equal precision: cuDNN may use TF32 for float32 convolutions, CuPy not.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    peer = torch_peer.TorchNet.from_gpunn(net, device=device)
    x, y = peer._inputs(x), peer._labels(y)

    def step(i):
        b = batches[i % n_batches]
        peer.train_step(x[b], y[b], eta, lmbda, n_batches)
    return step, lambda: torch_peer.synchronize(device)


def allocator(name):
    """``{"cupy": module}`` or ``{"torch": module}``: the library whose
    GPU memory a case of backend ``name`` uses; {} on the CPU."""
    if name.startswith("gpunn-cupy"):
        return {"cupy": cupy_or_none()}
    if name == "torch-cuda":
        import torch
        return {"torch": torch}
    return {}


def skip_reason(name):
    framework, device = name.split("-")[:2]
    if framework == "torch":
        try:
            import torch
        except ImportError:
            return "PyTorch is not installed"
        if device == "cuda" and not torch.cuda.is_available():
            return "PyTorch sees no CUDA device"
    elif device == "cupy" and cupy_or_none() is None:
        return backend._usable_cupy()[1]
    return None


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("mini_batch_size", MINI_BATCH_SIZES)
@pytest.mark.parametrize("model", list(EXPERIMENTS))
def test_epoch_time(benchmark, request, mnist, model, mini_batch_size, name):
    measure(benchmark, request, mnist, model, mini_batch_size, name)


@pytest.mark.parametrize("name", ["gpunn-numpy", "torch-cpu"])
@pytest.mark.parametrize("mini_batch_size", MINI_BATCH_SIZES)
@pytest.mark.system
def test_epoch_time_next_to_a_busy_process(benchmark, request, mnist,
                                           mini_batch_size, name):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        measure(benchmark, request, mnist, "dbl_conv_relu", mini_batch_size,
                name, busy)
    finally:
        busy.kill()
        busy.wait()


def measure(benchmark, request, mnist, model, mini_batch_size, name,
            busy=None):
    """Time ``model`` at ``mini_batch_size`` on backend ``name``; with
    ``busy``, a busy-looping process, each timed round next to it and a
    quiet round (the process stopped) before each."""
    reason = skip_reason(name)
    if reason:
        pytest.skip(reason)
    experiment = EXPERIMENTS[model]
    memory = allocator(name)
    baseline = reset_peak_memory(**memory)
    step, synchronize = trainer(name, experiment, mini_batch_size, *mnist)
    steps = request.config.getoption("--steps") or \
        max(5, 2000 // mini_batch_size)
    if benchmark.disabled:
        steps = 1

    def run(start=[0]):  # a round: `steps` steps on the following batches
        for i in range(start[0], start[0] + steps):
            step(i)
        start[0] += steps
        synchronize()

    for i in range(0 if benchmark.disabled else WARMUP_STEPS):
        step(i)
    synchronize()
    benchmark.group = "{} mini-batch {}{}".format(
        model, mini_batch_size, ", busy" if busy else "")
    quiet_rounds = []

    def quiet_round():  # pedantic's setup, before each timed round
        busy.send_signal(signal.SIGSTOP)
        start = time.perf_counter()
        run()
        quiet_rounds.append(time.perf_counter() - start)
        busy.send_signal(signal.SIGCONT)
        time.sleep(0.05)  # until it runs again
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1,
                       setup=quiet_round if busy else None)
    # The case's peak, before anything else allocates on the device (the
    # network that flops_per_epoch builds below).
    peak_mib, peak_kind = peak_memory_mib(baseline, **memory)

    epoch_steps = EPOCH_IMAGES // mini_batch_size
    flops = flops_per_epoch(experiment.network(mini_batch_size), mini_batch_size)
    info = {"model": model, "mini_batch_size": mini_batch_size,
            "framework": name.split("-")[0],
            "device": "cpu" if name.endswith(("numpy", "cpu")) else "cuda",
            "backend": name, "load": "busy" if busy else "quiet",
            "dtype": "float32", "steps": steps,
            "epoch_steps": epoch_steps, "flops_per_epoch": flops,
            "peak_memory_mib": peak_mib, "peak_memory_kind": peak_kind}
    if not benchmark.disabled:
        seconds = benchmark.stats.stats.median / steps * epoch_steps
        rates = machine(request.config.getoption("--threads"))["matmul_gflops"]
        rate = rates["cpu" if info["device"] == "cpu" else "gpu"]
        achieved = flops / seconds / 1e9
        info.update(epoch_seconds=seconds, achieved_gflops=achieved,
                    fraction_of_matmul_peak=fraction_of_peak(achieved, rate))
        if busy:
            info["quiet_epoch_seconds"] = statistics.median(
                quiet_rounds) / steps * epoch_steps
    benchmark.extra_info.update(info)
