"""gpunn.bench
~~~~~~~~~~~

``gpunn bench`` and ``gpunn bench compare``: comparing hardware.

``gpunn bench`` runs the benchmark suite of a gpunn checkout
(``benchmarks/test_epoch_time.py``, pytest-benchmark underneath) for the
chosen models, mini-batch sizes and backends, a progress line per case,
and writes one JSON file (pytest-benchmark's, with the machine's
description and name).  ``gpunn bench compare`` reads such files, one per
machine, and prints seconds per epoch side by side with the ratio of
each machine to the first (``gpunn/bench/report.py``).

``gpunn bench --scheduler ADDRESS`` runs it on a Dask worker instead
(``run_on_worker``), and with ``--each-worker`` on one worker of every
machine of the cluster: a result file per machine, ready for ``gpunn
bench compare``.

The suite is not part of the installed package: ``gpunn bench`` needs
the checkout's ``benchmarks/`` folder and the ``bench`` extras (pytest,
pytest-benchmark, threadpoolctl): on every worker, for ``--scheduler``.
What it records and compares is the package's, and so ``gpunn bench
compare`` runs anywhere gpunn is installed:

    machine.py   the machine's description, its float32 matmul rate
    flops.py     the FLOPs of a training epoch, counted from the shapes
    report.py    the comparison and report tables of result files
"""

import os
import re
import subprocess
import sys
import time

from gpunn.errors import ConfigError
from gpunn.experiments import EXPERIMENTS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))  # a checkout's root, if this is one
SUITE = os.path.join(REPO, "benchmarks", "test_epoch_time.py")
BACKENDS = ("gpunn-numpy", "gpunn-cupy", "gpunn-cupy-graph", "torch-cpu",
            "torch-cuda")
MINI_BATCH_SIZES = (10, 64, 256)
QUICK_STEPS = 5  # mini-batch steps per timed round with --quick


def suite():
    """The suite's path; a ConfigError saying what is needed if absent."""
    if not os.path.isfile(SUITE):
        raise ConfigError(
            "gpunn bench runs the benchmark suite of a gpunn checkout "
            "(benchmarks/test_epoch_time.py), which the installed package "
            "does not carry: run it from a clone of the repository, after "
            "pip install -e '.[bench,test]'")
    return SUITE


def cases(models, sizes, backends):
    """The pytest node ids of the chosen cases, in the suite's order."""
    for model in models:
        if model not in EXPERIMENTS:
            raise ConfigError("no model {!r}; the models are {}".format(
                model, ", ".join(EXPERIMENTS)))
    for backend in backends:
        if backend not in BACKENDS:
            raise ConfigError("no backend {!r}; the backends are {}".format(
                backend, ", ".join(BACKENDS)))
    return ["{}::test_epoch_time[{}-{}-{}]".format(suite(), model, size,
                                                   backend)
            for model in models for size in sizes for backend in backends]


def machine_name():
    """The CPU's model and cores, and the GPU's name where CuPy sees one:
    e.g. "AMD EPYC 7B13, 2 cores" or "NVIDIA H100 80GB HBM3"."""
    from gpunn.compute import backend
    from gpunn.bench.machine import cpu_model
    cupy, _ = backend._usable_cupy()
    if cupy is not None:
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else name
    return "{}, {} cores".format(cpu_model(), os.cpu_count())


def estimate_seconds(node_ids, steps, matmul_rate=None):
    """A rough time for the cases up front: each case's FLOPs at a quarter
    of ``matmul_rate`` (FLOP/s; default: this machine's measured float32
    matmul rate) for CPU cases, or 1 ms a step (GPU cases), plus 3 s of
    start-up each."""
    import numpy
    from gpunn.compute import backend
    from gpunn.bench.flops import flops_per_epoch
    from gpunn.bench.machine import matmul_gflops
    rate = (matmul_rate or matmul_gflops(numpy, 512) * 1e9) / 4
    total = 0.0
    backend.use("numpy", "float32", quiet=True)
    for node in node_ids:
        model, size, name = _parse(node)
        case_steps = 3 + 5 * (steps or max(5, 2000 // size))
        if name.endswith(("numpy", "cpu")):
            epoch_steps = 50_000 // size
            per_step = flops_per_epoch(EXPERIMENTS[model].network(size), size) \
                / epoch_steps / rate
        else:
            per_step = 1e-3
        total += 3 + case_steps * per_step
    return total


def _parse(node):
    model, size, name = re.match(r".*\[(\w+)-(\d+)-([\w-]+)\]$", node).groups()
    return model, int(size), name


def run(models, sizes, backends, quick, name, out, say=print):
    """Run the cases (a progress line each through ``say``) into the
    JSON file ``out``; returns the number of failed cases."""
    nodes = cases(models, sizes, backends)
    steps = QUICK_STEPS if quick else None
    name = name or machine_name()
    say("gpunn bench: {} case{} on {}, about {} (a rough estimate); results "
        "to {}".format(len(nodes), "" if len(nodes) == 1 else "s", name,
                       _minutes(estimate_seconds(nodes, steps)), out))
    out = os.path.abspath(out)  # the suite runs in the checkout
    command = [sys.executable, "-m", "pytest", *nodes, "-v", "-p",
               "no:cacheprovider", "--benchmark-enable",
               "--benchmark-json={}".format(out), "-o", "addopts="]
    if steps:
        command.append("--steps={}".format(steps))
    env = dict(os.environ, GPUNN_BENCH_NAME=name,
               PYTHONPATH=os.pathsep.join(
                   [REPO] + [p for p in os.environ.get("PYTHONPATH", "")
                             .split(os.pathsep) if p]))
    start, done, failed = time.monotonic(), 0, 0
    outcome = re.compile(r"(\S+::test_epoch_time\[[^\]]+\]) "
                         r"(PASSED|SKIPPED|FAILED|ERROR)")
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            match = outcome.search(line)
            if not match:
                continue
            done += 1
            failed += match.group(2) in ("FAILED", "ERROR")
            model, size, backend = _parse(match.group(1))
            elapsed = time.monotonic() - start
            say("[{}/{}] {} mini-batch {} {}: {} ({} so far)".format(
                done, len(nodes), model, size, backend,
                match.group(2).lower(), _minutes(elapsed)))
    if proc.returncode not in (0, 1) or not os.path.exists(out):
        raise ConfigError("the benchmark suite did not run:\n" +
                          "".join(lines[-30:]))
    return failed


def run_on_worker(models, sizes, backends, quick, name, topic):
    """A task: ``run`` on this worker's machine (named ``name``, default
    ``machine_name()``), its progress lines sent to ``topic`` of the
    event log.  Returns {"name", "host", "results": the JSON file's
    text, "failed": the failed cases}."""
    import tempfile
    from distributed import get_worker
    worker = get_worker()
    name = name or machine_name()

    def say(line):
        worker.log_event(topic, "{}: {}".format(worker.ip, line))

    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "bench.json")
        failed = run(models, sizes, backends, quick, name, out, say=say)
        with open(out) as f:
            return {"name": name, "host": worker.ip, "results": f.read(),
                    "failed": failed}


def file_name(name):
    """The default result file of the machine ``name``."""
    return "bench-{}.json".format(
        re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower())


def _minutes(seconds):
    if seconds < 90:
        return "{:.0f} s".format(seconds)
    return "{:.1f} min".format(seconds / 60)


def compare(paths, markdown_path=None, png_path=None, say=print):
    """Print the comparison of the result files ``paths`` (the first is
    the reference); also write it to ``markdown_path`` and a chart to
    ``png_path`` if given."""
    # Not at the top: ``python -m gpunn.bench.report`` imports this
    # package first, and would then find report imported already.
    from gpunn.bench import report
    try:
        runs = report.load_results(paths)
        text = report.comparison(runs)
        if markdown_path:
            with open(markdown_path, "w", encoding="utf-8") as f:
                f.write(text)
        if png_path:
            report.plot(runs, png_path)
    except report.ReportError as e:
        raise ConfigError(str(e)) from None
    say(text, end="")
