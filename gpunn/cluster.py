"""cluster.py
~~~~~~~~~~~~

Many runs at once, on Dask distributed: ``gpunn reproduce``, ``gpunn
sweep`` and ``gpunn bench --scheduler``.  This is the Dask side alone:
the commands (gpunn.commands) show the progress and write the results.

``connect`` gives a ``distributed.Client``: of a running scheduler
(``--scheduler tcp://host:8786``: its workers may be other machines) or
of a cluster started here: on a CPU one single-threaded worker process
per core, with GPUs ``dask_cuda.LocalCUDACluster``'s worker per GPU,
several runs on each (``for_runs`` chooses for reproduce and sweep).
``train_all`` trains a table's runs, ``vote`` runs the book's vote on a
worker, ``bench_on`` runs ``gpunn bench`` on a worker of each machine.

A run is a task, ``train``.  On its worker it runs the ``gpunn train``
command a user would type (``reproduce.Run.command``: ``--resume``
where the run's folder holds a checkpoint) in a child process, sends
each epoch's record to the client through the scheduler's event log,
and returns the run's settings and records.  The client alone writes
logs and tables.  Runs of a table take the same seeds wherever they
run, so their results are those of the same ``gpunn train`` commands
typed by hand.

What can go wrong:

- A worker dies mid-run (killed, out of memory).  The child dies with
  it (Linux's parent-death signal): no orphan goes on writing to the
  run's folder.  Dask runs the task again on a worker (``RETRIES``),
  and it goes on from the run's last checkpoint: the epoch in progress
  is lost, nothing else.  Checkpoints must therefore be where the
  workers can reach them: ``--checkpoints`` (a shared folder for a
  cluster of several machines).
- The child fails.  A crash or a signal (exit codes other than 2 and 3)
  raises, and Dask retries; gpunn's own errors (2: bad settings or
  files, 3: the run diverged) would fail the same way again, and are
  returned as the run's failure.
- The client stops (Ctrl-C, or it is gone): the scheduler cancels the
  tasks, and each child gets SIGINT, as Ctrl-C on ``gpunn train``: its
  checkpoint stays for the next ``gpunn reproduce``.
- Two tasks on one run's folder (a command run twice at once): a lock
  on the folder makes the second wait for the first.
"""

import contextlib
import fcntl
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter

import gpunn
from gpunn import reproduce
from gpunn.compute import backend
from gpunn.errors import ConfigError

#: Seconds to reach a scheduler, and for it to have a worker.
TIMEOUT = 10
#: Times a run's task is run again after its child crashed or was
#: killed, or its worker died.
RETRIES = 3
#: gpunn's own exit codes: bad settings or files (2), a diverging run
#: (3).  Run again, they would fail again.
FINAL_EXIT_CODES = (2, 3)
POLL_SECONDS = 0.25


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "gpunn reproduce, sweep and bench --scheduler run on Dask "
            "distributed, which is not installed: pip install "
            "'gpunn[cluster]'") from None
    return distributed


# ---------------------------------------------------------------- the client

@contextlib.contextmanager
def connect(scheduler=None, jobs=None, gpus=0, timeout=TIMEOUT):
    """A ``distributed.Client`` of the scheduler at the address
    ``scheduler``, or (None) of a cluster started here for the time of
    the ``with``: ``jobs`` single-threaded worker processes (default:
    one per core) without GPUs; with ``gpus`` GPUs a worker per GPU,
    ``jobs // gpus`` runs on each.  Raises a ConfigError saying what to
    do where the scheduler does not answer within ``timeout`` seconds,
    has no worker, or its workers cannot run this gpunn."""
    distributed = _distributed()
    cluster = None
    if scheduler:
        try:
            from distributed.comm import parse_address, parse_host_port
            parse_host_port(parse_address(scheduler)[1])
        except ValueError as e:
            raise ConfigError("{} is not a scheduler's address ({}): give "
                              "one as tcp://HOST:PORT".format(scheduler, e)
                              ) from None
        try:
            client = distributed.Client(scheduler, timeout=timeout,
                                        set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise ConfigError(
                "no Dask scheduler answered at {} within {} s ({}). Start "
                "one there with 'dask scheduler' and workers with 'dask "
                "worker {}', or leave out --scheduler to run on this "
                "machine".format(scheduler, timeout, _first_line(e),
                                 scheduler)) from None
    else:
        cluster = local_cluster(jobs or backend.cores(), gpus)
        client = distributed.Client(cluster, set_as_default=False)
    try:
        check_workers(client, scheduler or "the local cluster", timeout)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def for_runs(scheduler, jobs, backend_name):
    """``(client, backend name, where the runs go, in words)`` for the
    runs of reproduce and sweep: the scheduler at ``scheduler``, or a
    cluster on this machine, ``jobs`` runs side by side (None: one per
    CPU core on numpy, four per GPU on cupy).  On this machine, the
    backend "auto" becomes cupy where there is a GPU, else numpy."""
    if scheduler:
        if jobs:
            raise ConfigError(
                "--jobs sizes the cluster gpunn starts on this machine; with "
                "--scheduler, the workers' threads say how many runs go at "
                "once (dask worker --nthreads)")
        with connect(scheduler) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            yield client, backend_name, "{} side by side on the {} worker{} "\
                "of {}".format(sum(w["nthreads"] for w in workers.values()),
                               len(workers), "" if len(workers) == 1 else "s",
                               scheduler)
        return
    # Counted once (in a child process: this one holds no CUDA context).
    gpus = backend.gpu_count() if backend_name != "numpy" else 0
    if backend_name == "auto":
        backend_name = "cupy" if gpus else "numpy"
    jobs = jobs or reproduce.default_jobs(gpus)
    with connect(jobs=jobs, gpus=gpus) as client:
        yield client, backend_name, "{} side by side".format(jobs)


def local_cluster(jobs, gpus):
    """A cluster on this machine: without GPUs, ``jobs`` worker
    processes of one thread (a run each); with ``gpus``, dask-cuda's
    worker per GPU, ``jobs // gpus`` runs each (a mini-batch of 10
    leaves most of a GPU idle)."""
    distributed = _distributed()
    # The workers' logs reach the screen only at CRITICAL: a run's failure
    # comes back as its task's result, and what a worker logs at ERROR is
    # Dask's plumbing, e.g. a heartbeat that finds the scheduler gone while
    # the cluster closes after Ctrl-C on a busy machine (a traceback the
    # user need not see).
    quiet = dict(dashboard_address=None, silence_logs=logging.CRITICAL,
                 memory_limit=0)  # a run's memory is its child's
    runs_per_gpu = max(1, jobs // max(gpus, 1))
    Cluster, options = distributed.LocalCluster, dict(
        n_workers=jobs, threads_per_worker=1, processes=True)
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
            Cluster, options = LocalCUDACluster, dict(
                threads_per_worker=runs_per_gpu)
        except ImportError:
            if gpus > 1:
                raise ConfigError(
                    "{} GPUs here: gpunn gives each its own Dask worker with "
                    "dask-cuda, which is not installed: pip install "
                    "'gpunn[cuda12]' (or cuda13)".format(gpus)) from None
            options = dict(n_workers=1, threads_per_worker=runs_per_gpu,
                           processes=True)
    # Ctrl-C in a terminal goes to every process of its group: the
    # workers ignore it (they inherit SIG_IGN), this process cancels
    # their tasks, and the runs' own processes stop as gpunn train does.
    ignoring = threading.current_thread() is threading.main_thread()
    if ignoring:
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return Cluster(**options, **quiet)
    finally:
        if ignoring:
            signal.signal(signal.SIGINT, handler)


def check_workers(client, where, timeout=TIMEOUT):
    """Raise a ConfigError where the scheduler has no worker within
    ``timeout`` seconds, or where one of its workers cannot import gpunn
    or runs another version of it."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ConfigError("the Dask scheduler at {} has no workers (waited {} "
                          "s): start some with 'dask worker {}'".format(
                              where, timeout, where)) from None
    # The function is sent by reference: a worker without gpunn fails
    # to import it, and says so.
    versions = client.run(worker_version, on_error="return")
    wrong = ["{}: {}".format(address, "gpunn {}".format(version)
                             if isinstance(version, str) else
                             _first_line(version))
             for address, version in sorted(versions.items())
             if version != gpunn.__version__]
    if wrong:
        raise ConfigError(
            "{} of the {} workers of {} cannot run this gpunn ({}): {}. "
            "Install it on every worker's machine (pip install "
            "'gpunn[cluster]', or from the same checkout)".format(
                len(wrong), len(versions), where, gpunn.__version__,
                "; ".join(wrong)))


def worker_version():
    """On a worker: its gpunn's version."""
    return gpunn.__version__


def _first_line(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def runs_per_machine(client):
    """For each worker's host, the runs its workers take at once (their
    threads): a run's share of that machine's cores."""
    machines = Counter()
    for info in client.scheduler_info(n_workers=-1)["workers"].values():
        machines[info["host"]] += info["nthreads"]
    return dict(machines)


# ---------------------------------------------------------------- runs

class RunFailed(Exception):
    """A run's process crashed or was killed (Dask runs it again)."""


def train_all(client, planned, epochs, options, threads=None, show=None):
    """Train the runs ``planned`` (reproduce.Run's, all of them: a run
    whose folder holds it finished comes back at once) on ``client``'s
    workers, ``epochs`` each (None: their rows' epochs), with
    ``options`` (those of ``Run.command``) and ``threads`` CPU threads
    each (None: their share of their machine's cores).  Yields (run,
    result) as each run ends: its ``train`` result, or {"failed": why}.
    Meanwhile ``show(events, wait)`` gets the queue of the runs'
    messages (see ``train``).  Closing the generator (Ctrl-C; use it in
    ``contextlib.closing``) cancels the tasks: their runs keep their
    checkpoints."""
    machines = runs_per_machine(client)

    def submit(topic):
        return {client.submit(
            train, run, epochs or run.row.epochs, options, threads, machines,
            topic, key="train-{}-run{}-{}".format(run.row.key, run.index,
                                                  uuid.uuid4().hex[:8]),
            retries=RETRIES, pure=False): run for run in planned}

    with contextlib.closing(finished(client, submit, show)) as ends:
        for run, result in ends:
            if isinstance(result, Exception):
                result = {"failed": "({}: {})".format(
                    type(result).__name__, _first_line(result))}
            yield run, result


def vote(client, voters, epochs):
    """reproduce.vote of the runs ``voters``, on a worker (it reads
    their folders)."""
    try:
        return client.submit(reproduce.vote, voters, epochs,
                             pure=False).result()
    except (OSError, ValueError) as e:
        raise ConfigError(
            "the vote could not read its five networks on one worker ({}): "
            "give the runs a --checkpoints folder every worker can read"
            .format(e)) from None


def workers_by_machine(client, each=True):
    """{host: the address of one of its workers}, for every machine of
    ``client``'s cluster (``each``), or for one."""
    found = {}
    workers = client.scheduler_info(n_workers=-1)["workers"]
    for address, info in sorted(workers.items()):
        found.setdefault(info["host"], address)
    if not each:
        found = dict([next(iter(found.items()))])
    return found


def bench_on(client, hosts, models, sizes, backends, quick, name, show):
    """``gpunn bench`` (bench.run_on_worker, its arguments) on the
    worker of each machine of ``hosts`` (``workers_by_machine``'s), all
    at once.  Yields (host, result) as each ends, ``show`` getting their
    progress lines meanwhile, as in ``finished``: use it in
    ``contextlib.closing``."""
    from gpunn import bench

    def submit(topic):
        return {client.submit(bench.run_on_worker, models, sizes, backends,
                              quick, name, topic, workers=[address],
                              allow_other_workers=False, pure=False): host
                for host, address in hosts.items()}

    return finished(client, submit, show)


def finished(client, submit, show):
    """Yield (what, result) as each task of ``submit(topic)`` (a dict
    {future: what}) ends, its result being what it returned or the
    exception it raised; meanwhile ``show(events, wait)`` is given the
    queue of what the tasks sent to ``topic`` of the event log.  Tasks
    still running when the generator is closed (Ctrl-C) are cancelled:
    use it in ``contextlib.closing``."""
    topic = "gpunn-{}".format(uuid.uuid4().hex)
    events = queue.Queue()
    client.subscribe_topic(topic, events.put)
    pending = set()
    try:
        futures = submit(topic)
        pending = set(futures)
        while pending:
            show(events, POLL_SECONDS)
            for future in [f for f in pending if f.done()]:
                pending.discard(future)
                show(events, 0)
                try:
                    result = future.result()
                except Exception as e:
                    result = e
                yield futures[future], result
        show(events, 0)
    finally:
        if pending:
            client.cancel(list(pending))
        client.unsubscribe_topic(topic)


# ---------------------------------------------------------------- on a worker

def train(run, epochs, options, threads, machines, topic):
    """The task of a run, on a worker: train ``run`` (a reproduce.Run)
    for ``epochs``, as ``run.command`` says (``--resume`` where its
    folder holds a checkpoint), in a child process that dies with this
    worker, with ``threads`` CPU threads (None: the cores over
    ``machines[this host]``, the runs this machine takes at once).
    Sends each epoch's record to ``topic``.  Returns {"settings": the
    run's run.json, "records": its per-epoch records, "seconds": the
    child's wall time (None if it had finished already), "resumed_at":
    the epochs its checkpoint held when the child started}, or
    {"failed": why} where gpunn refused, the run diverged or the task
    was cancelled; raises RunFailed (Dask runs it again) where the child
    crashed or was killed."""
    distributed = _distributed()
    worker = distributed.get_worker()
    key = worker.get_current_task()

    def send(**message):
        worker.log_event(topic, dict(message, run=run.name, epochs=epochs,
                                     worker=worker.address))

    run_folder = run.run_folder
    os.makedirs(run.folder, exist_ok=True)
    with _only_process(run_folder, lambda: send(waiting=True)) as lock:
        if run.finished(epochs):
            return {"settings": run_folder.settings(),
                    "records": run.records(), "seconds": None}
        if run.row.expanded:
            _expanded_data_once()
        command = run.command(epochs, options)
        done = len(run_folder.complete_records())
        if "--resume" not in command:
            done = 0
        send(started=done, seed=run.seed)
        share = threads or max(1, backend.cores() // machines.get(
            worker.ip, worker.state.nthreads))
        env = run_environment(os.environ, share, threads)
        start = time.perf_counter()
        returncode = _run_child(run_folder, command, env, lock, done,
                                lambda record: send(record=record),
                                lambda: _cancelled(worker, key))
        seconds = time.perf_counter() - start
        send(stopped=returncode)
        if returncode == 0:
            return {"settings": run_folder.settings(),
                    "records": run.records(), "seconds": seconds,
                    "resumed_at": done}
    output = run_folder.output_path
    why = "with exit code {}; see {} on {}".format(returncode, output,
                                                   worker.ip)
    if returncode in FINAL_EXIT_CODES or _cancelled(worker, key):
        return {"failed": why}
    raise RunFailed("{} {}: {}".format(run.name, why, _tail(output)))


def run_environment(environ, share, threads=None):
    """The environment of a run's ``gpunn train`` child on a worker:
    ``environ`` with ``share`` CPU threads (GPUNN_THREADS and the BLAS
    libraries' variables, where not set; --threads, given as
    ``threads``, over $GPUNN_THREADS), less Dask's malloc setting.

    Dask's nanny gives its workers MALLOC_TRIM_THRESHOLD_=65536
    (distributed.nanny.pre-spawn-environ): a run would hand its step's
    temporaries back to the kernel after every mini-batch and fault them
    in again (an expanded-data epoch took twice as long, 40% of it in the
    kernel).  The run gets glibc's default."""
    env = dict(environ)
    if env.get("MALLOC_TRIM_THRESHOLD_") == "65536":
        del env["MALLOC_TRIM_THRESHOLD_"]
    if threads:
        env["GPUNN_THREADS"] = str(share)
    for name in ("GPUNN_THREADS", "OMP_NUM_THREADS",
                 "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, str(share))
    return env


def _run_child(run_folder, command, env, lock, done, on_record, cancelled):
    """Run ``command`` with its output in the run folder's output.txt,
    calling ``on_record`` with each record its log gains after the
    ``done`` first; SIGINT to the child when ``cancelled()``.  The child
    holds the folder's ``lock`` too, for as long as it lives.  Returns
    its exit code (negative: the signal that killed it)."""
    with open(run_folder.output_path, "a") as output:
        output.write("$ {}\n".format(shlex.join(command)))
        output.flush()
        child = subprocess.Popen(_dying_with_this_thread(command),
                                 stdout=output, stderr=subprocess.STDOUT,
                                 env=env, pass_fds=(lock.fileno(),))
        try:
            interrupted = None
            while True:
                finished = child.poll() is not None
                records = run_folder.complete_records()
                for record in records[done:]:
                    on_record(record)
                done = max(done, len(records))
                if finished:
                    return child.returncode
                if interrupted is None and cancelled():
                    child.send_signal(signal.SIGINT)
                    interrupted = time.monotonic()
                elif interrupted and time.monotonic() - interrupted > 60:
                    child.kill()
                time.sleep(POLL_SECONDS)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def _cancelled(worker, key):
    task = worker.state.tasks.get(key)
    return task is None or task.state == "cancelled"


# The child sets Linux's parent-death signal, then becomes gpunn train:
# when the thread that started it ends (its worker killed), it is killed.
# Ctrl-C (SIGINT), which its worker may ignore, stops it as it stops
# gpunn train.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(137)  # the parent died before the signal was set\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n")


def _dying_with_this_thread(command):
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()),
            *command]


@contextlib.contextmanager
def _only_process(run_folder, on_wait):
    """Hold the lock of the run's folder (waiting, after ``on_wait()``,
    while another process holds it); gives the lock's file, which a
    child that inherits it holds with this process (flock locks belong
    to the open file, not to a process)."""
    with open(run_folder.lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock


def _expanded_data_once():
    """Make the expanded training data on this machine, if no run did:
    one process at a time."""
    lock_path = os.path.join(tempfile.gettempdir(), "gpunn-expand.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([sys.executable, "-m", "gpunn.expand_mnist"],
                       check=True, stdout=subprocess.DEVNULL)


def _tail(path, lines=5):
    try:
        with open(path) as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return ""
