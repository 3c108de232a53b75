"""gpunn on Dask (reproduce, sweep, bench --scheduler): real schedulers
and workers on 127.0.0.1, real ``gpunn`` commands, checked against the
same runs made by ``gpunn train`` without Dask."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest

from tests.helpers import ctrl_c_as_at_a_terminal
from tests.test_cli import REPO, gpunn, ok, weights

#: These run gpunn as a user does (subprocesses): the system tier.
pytestmark = pytest.mark.system

distributed = pytest.importorskip("distributed")

SMALL = ["--limit", "1000", "--eval-limit", "300", "--backend", "numpy"]


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def same_epochs(compact, records):
    """The epochs of a compact log (reproduce's, sweep's) are those of a
    run's own log.jsonl: accuracies equal, training cost to its 6
    digits."""
    assert len(compact) == len(records)
    for c, r in zip(compact, records):
        assert (c["epoch"], c["validation_accuracy"], c["test_accuracy"]) == \
            (r["epoch"], r["validation_accuracy"], r["test_accuracy"])
        assert c["training_cost"] == float("{:.6g}".format(r["training_cost"]))


def train_without_dask(folder, *args):
    ok(gpunn("train", *args, "--out", folder, "--quiet"))
    return lines(os.path.join(folder, "log.jsonl"))


def environment():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


class Cluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1,
    started as a user would, stopped (killed) at the end of a test."""

    def __init__(self, folder):
        self.folder = folder
        self.processes = []
        self.scheduler_file = os.path.join(folder, "scheduler.json")
        self._start(["scheduler", "--host", "127.0.0.1", "--port", "0",
                     "--no-dashboard", "--scheduler-file",
                     self.scheduler_file])
        deadline = time.monotonic() + 60
        while not os.path.exists(self.scheduler_file):
            assert time.monotonic() < deadline, "no scheduler"
            time.sleep(0.1)
        time.sleep(0.2)
        with open(self.scheduler_file) as f:
            self.address = json.load(f)["address"]

    def _start(self, args, python_code=None):
        log = open(os.path.join(self.folder, "dask-{}.log".format(
            len(self.processes))), "w")
        command = [sys.executable, "-m", "dask", *args] if python_code is \
            None else [sys.executable, "-c", python_code, *args]
        self.processes.append(subprocess.Popen(
            command, env=environment(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))  # no Ctrl-C of the test's group

    def add_workers(self, n, python_code=None):
        for _ in range(n):
            self._start(["worker", "--nthreads", "1", "--no-dashboard",
                         "--scheduler-file", self.scheduler_file]
                        if python_code is None else
                        [self.address, "--nthreads", "1", "--no-nanny",
                         "--no-dashboard"], python_code)
        with distributed.Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=60)

    def stop(self):
        for p in self.processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path))
    yield c
    c.stop()


def test_reproduce_on_a_local_cluster_logs_what_gpunn_train_logs(tmp_path):
    """Without --scheduler: a cluster of --jobs single-threaded workers
    on this machine; each run's compact log holds the epochs of the same
    gpunn train command run without Dask."""
    out = ok(gpunn("reproduce", "shallow", "ch3-30", "--runs", "1", "--jobs",
                   "2", "--epochs", "2", "--out", tmp_path / "r", *SMALL))
    assert "2 runs of 2 rows on numpy, 2 side by side" in out
    # The records came while the runs ran, one line per epoch.
    assert "shallow run 0: epoch 1/2, validation accuracy" in out
    assert "ch3-30 run 0: epoch 2/2, validation accuracy" in out
    header, *epochs = lines(tmp_path / "r" / "logs" / "shallow-run0.jsonl")
    alone = train_without_dask(tmp_path / "shallow", "shallow", "--seed", "1",
                               "--epochs", "2", "--dtype", "float32", *SMALL)
    same_epochs(epochs, alone)
    header, *epochs = lines(tmp_path / "r" / "logs" / "ch3-30-run0.jsonl")
    alone = train_without_dask(tmp_path / "ch3", "network2", "--n", "30",
                               "--eta", "0.5", "--lmbda", "0", "--seed", "1",
                               "--epochs", "2", "--dtype", "float64", *SMALL)
    assert [(e["validation_accuracy"], e["test_accuracy"]) for e in epochs] \
        == [(r["validation_accuracy"], r["test_accuracy"]) for r in alone]
    assert header["settings"]["seed"] == 1 and header["dtype"] == "float64"


def test_a_sweep_through_a_scheduler_logs_what_gpunn_train_logs(tmp_path):
    """A distributed.LocalCluster of two worker processes, given as
    --scheduler: three values of lmbda, and the same three runs without
    Dask; the table and the plot of the sweep."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=None) as c:
        out = ok(gpunn("sweep", "shallow", "--lmbda", "0", "0.1", "100",
                       "--runs", "1", "--epochs", "2", "--scheduler",
                       c.scheduler_address, "--out", tmp_path / "s", *SMALL))
    assert "on the 2 workers of {}".format(c.scheduler_address) in out
    sweep = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [e["lmbda"] for e in sweep] == [0.0, 0.1, 100.0]
    for entry in sweep:
        lmbda = "{:g}".format(entry["lmbda"])
        header, *epochs = lines(tmp_path / "s" / "logs" /
                                "shallow-lmbda{}-run0.jsonl".format(lmbda))
        assert header["settings"]["lmbda"] == entry["lmbda"]
        alone = train_without_dask(tmp_path / lmbda, "shallow", "--lmbda",
                                   lmbda, "--seed", "1", "--epochs", "2",
                                   "--dtype", "float32", *SMALL)
        same_epochs(epochs, alone)
        # The sweep's number: network3's best epoch, the last of best
        # validation accuracy, and its test accuracy.
        best = [r for r in alone if r["test_accuracy"] is not None][-1]
        assert entry["validation"] == round(100 * best["validation_accuracy"], 2)
        assert entry["test"] == round(100 * best["test_accuracy"], 2)
    # lmbda 100 is far too much: the book's point.
    assert sweep[2]["validation"] < sweep[0]["validation"] - 10
    assert "| 100 | {:.2f}% |".format(sweep[2]["validation"]) in out
    from PIL import Image
    assert Image.open(tmp_path / "s" / "sweep.png").size == (800, 500)
    again = ok(gpunn("sweep", "shallow", "--lmbda", "0", "0.1", "100",
                     "--report", "--out", tmp_path / "s"))
    assert again.split("Table in")[0] in out


def test_a_killed_worker_costs_its_epoch_and_the_command_completes(
        tmp_path, cluster):
    """A real scheduler and two workers; the one training run 0 is
    SIGKILLed in run 0's second epoch.  The command completes, run 0
    goes on from its checkpoint on the other worker, and its weights are
    those of an uninterrupted run."""
    cluster.add_workers(2)
    args = ["basic_conv", "--runs", "2", "--epochs", "3", "--limit", "4000",
            "--eval-limit", "200", "--backend", "numpy"]
    command = subprocess.Popen(
        [sys.executable, "-m", "gpunn", "reproduce", *args, "--scheduler",
         cluster.address, "--out", str(tmp_path / "r")], env=environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run0 = tmp_path / "r" / "runs" / "basic_conv" / "run-0"
    deadline = time.monotonic() + 60
    while not (run0 / "network.npz").exists():
        assert time.monotonic() < deadline and command.poll() is None
        time.sleep(0.05)
    child = [pid for pid in os.listdir("/proc") if pid.isdigit() and
             _cmdline(pid).endswith("--out {} --quiet".format(run0))]
    assert len(child) == 1, child
    worker = _parent(child[0])
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _cmdline(child[0]):
        assert time.monotonic() < deadline, "the run outlived its worker"
        time.sleep(0.05)
    out, _ = command.communicate(timeout=120)
    assert command.returncode == 0, out
    assert "basic_conv run 0: resumed at epoch 1 on" in out
    assert "--resume" in (run0 / "output.txt").read_text()
    header, *epochs = lines(tmp_path / "r" / "logs" / "basic_conv-run0.jsonl")
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    ok(gpunn("train", "basic_conv", "--epochs", "3", "--limit", "4000",
             "--eval-limit", "200", "--backend", "numpy", "--dtype",
             "float32", "--seed", "1", "--out", tmp_path / "whole", "--quiet"))
    resumed, whole = weights(run0 / "network.npz"), \
        weights(tmp_path / "whole" / "network.npz")
    assert resumed.keys() == whole.keys()
    for name in whole:
        numpy.testing.assert_array_equal(resumed[name], whole[name])
    table = json.loads((tmp_path / "r" / "results.json").read_text())
    assert len(table[0]["runs"]) == 2


def _cmdline(pid):
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _parent(pid):
    with open("/proc/{}/stat".format(pid)) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_bench_on_each_machine_of_a_cluster(tmp_path, cluster):
    """Two workers on one machine: the suite runs once, on one of them,
    and its file is one that bench compare reads."""
    cluster.add_workers(2)
    out = ok(gpunn("bench", "--scheduler", cluster.address, "--each-worker",
                   "--models", "shallow", "--batch", "10", "--backend",
                   "gpunn-numpy", "--quick", "--out", tmp_path / "bench"))
    assert "on 1 machine of {}: 127.0.0.1".format(cluster.address) in out
    assert "127.0.0.1: [1/1] shallow mini-batch 10 gpunn-numpy: passed" in out
    files = os.listdir(tmp_path / "bench")
    assert len(files) == 1 and files[0].startswith("bench-")
    compared = ok(gpunn("bench", "compare", tmp_path / "bench" / files[0]))
    assert "| shallow | gpunn-numpy | 10 |" in compared
    p = gpunn("bench", "--each-worker", "--quick")
    assert p.returncode == 2 and "give its --scheduler" in p.stderr


def test_a_scheduler_that_is_not_there_or_has_no_workers(tmp_path, cluster):
    start = time.monotonic()
    p = gpunn("reproduce", "shallow", "--scheduler", "tcp://127.0.0.1:9",
              "--out", tmp_path / "r")
    assert p.returncode == 2 and time.monotonic() - start < 40
    assert "no Dask scheduler answered at tcp://127.0.0.1:9 within 10 s" \
        in p.stderr and "Traceback" not in p.stderr
    p = gpunn("sweep", "shallow", "--lmbda", "1", "--scheduler", "nowhere",
              "--out", tmp_path / "s")
    assert p.returncode == 2 and "nowhere is not a scheduler's address" \
        in p.stderr and "Traceback" not in p.stderr
    # The scheduler is there, with no worker.
    p = gpunn("reproduce", "shallow", "--scheduler", cluster.address,
              "--out", tmp_path / "r")
    assert p.returncode == 2 and "has no workers" in p.stderr
    assert "dask worker {}".format(cluster.address) in p.stderr


def test_workers_without_gpunn_are_named(tmp_path, cluster):
    # A real dask worker, in a Python where gpunn cannot be imported.
    cluster.add_workers(1, python_code=(
        "import sys\n"
        "sys.modules['gpunn'] = None  # import gpunn fails\n"
        "sys.argv[0] = 'dask worker'\n"
        "from distributed.cli.dask_worker import main\n"
        "main()\n"))
    p = gpunn("reproduce", "shallow", "--scheduler", cluster.address,
              "--out", tmp_path / "r")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "1 of the 1 workers of {} cannot run this gpunn".format(
        cluster.address) in p.stderr
    assert "No module named 'gpunn" in p.stderr
    assert not (tmp_path / "r" / "runs").exists()


def test_sweep_values_and_bad_input():
    from gpunn import sweep
    assert [r.train[2] for r in sweep.rows("dbl_conv_relu", None)] == [
        "0.0", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1.0", "10.0",
        "100.0"]
    assert len(sweep.rows("regularized_dbl_conv", None)) == 8
    p = gpunn("sweep", "shallow")
    assert p.returncode == 2 and "give shallow its values with --lmbda" \
        in p.stderr
    p = gpunn("sweep", "dbl_conv_relu", "--lmbda", "1", "1")
    assert p.returncode == 2 and "a value is given twice" in p.stderr
    p = gpunn("sweep", "dbl_conv_rel", "--lmbda", "1")
    assert p.returncode == 2 and "no model 'dbl_conv_rel' to sweep" in p.stderr
    p = gpunn("sweep", "shallow", "--lmbda", "-1")
    assert p.returncode == 2 and "must be 0 or more" in p.stderr
    p = gpunn("reproduce", "shallow", "--jobs", "2", "--scheduler",
              "tcp://127.0.0.1:9")
    assert p.returncode == 2 and "--jobs sizes the cluster" in p.stderr


def test_ctrl_c_stops_the_runs_and_the_same_command_goes_on(tmp_path):
    """Ctrl-C in a terminal: SIGINT to every process of the group (the
    command, its local cluster's workers, the runs).  The command exits
    130 at once, without the workers' tracebacks; each run stopped as
    gpunn train stops; the same command then goes on from the
    checkpoints."""
    args = ["reproduce", "basic_conv", "--runs", "2", "--epochs", "3",
            "--limit", "4000", "--eval-limit", "200", "--backend", "numpy",
            "--out", str(tmp_path / "r")]
    command = subprocess.Popen(
        [sys.executable, "-m", "gpunn", *args], env=environment(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=ctrl_c_as_at_a_terminal)
    run0 = tmp_path / "r" / "runs" / "basic_conv" / "run-0"
    deadline = time.monotonic() + 60
    while not (run0 / "network.npz").exists():
        assert time.monotonic() < deadline and command.poll() is None
        time.sleep(0.05)
    os.killpg(command.pid, signal.SIGINT)
    start = time.monotonic()
    out, err = command.communicate(timeout=60)
    assert command.returncode == 130, out + err
    assert time.monotonic() - start < 15
    assert "Traceback" not in out + err, out + err
    assert "The runs keep their checkpoints (in {})".format(
        tmp_path / "r" / "runs") in err
    assert "holds its 1 epoch" in (run0 / "output.txt").read_text()
    out = ok(gpunn(*args))
    assert "basic_conv run 0: resumed at epoch 1 on" in out
    header, *epochs = lines(tmp_path / "r" / "logs" / "basic_conv-run0.jsonl")
    assert [e["epoch"] for e in epochs] == [0, 1, 2]


def worker_environments():
    """What a local cluster's worker has in its environment, and what
    cluster.run_environment makes of it for a run on one thread."""
    import os as worker_os
    from gpunn import cluster
    with cluster.connect(jobs=1) as client:
        return next(iter(client.run(lambda: (
            dict(worker_os.environ),
            cluster.run_environment(worker_os.environ, 1))).values()))


def test_runs_do_not_inherit_dasks_malloc_trim_threshold():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 on its workers; with
    it a run's every step faulted its temporaries in again (twice the
    epoch time).  A run's environment drops it, and sets the threads."""
    from gpunn import cluster
    worker, run = worker_environments()
    if worker.get("MALLOC_TRIM_THRESHOLD_") != "65536":
        pytest.skip("this Dask sets no MALLOC_TRIM_THRESHOLD_ on its workers")
    assert "MALLOC_TRIM_THRESHOLD_" not in run
    assert run["OPENBLAS_NUM_THREADS"] == worker.get("OPENBLAS_NUM_THREADS", "1")
    # A value the user chose is theirs; --threads wins over GPUNN_THREADS.
    env = cluster.run_environment({"MALLOC_TRIM_THRESHOLD_": "1000000",
                                   "GPUNN_THREADS": "4"}, 2, threads=2)
    assert env["MALLOC_TRIM_THRESHOLD_"] == "1000000"
    assert env["GPUNN_THREADS"] == "2" and env["OMP_NUM_THREADS"] == "2"
