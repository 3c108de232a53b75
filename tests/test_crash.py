"""Nothing lost on a kill: ``gpunn train`` killed with SIGKILL at random
moments, again and again, then resumed, ends with the weights of a run
that was never interrupted.

A real subprocess is started (``python -m gpunn train shallow ...``, or
``--resume RUN`` once a checkpoint exists), killed at a moment drawn
from a seeded ``random.Random`` (the same draws on every run; where they
land depends on the machine's speed, which no check does), and the run
folder is checked after every kill:

- ``network.npz``, if there is one, loads with ``gpunn.saving.load``:
  the checkpoint is never a half-written file;
- its ``epochs_done`` never decreases from one kill to the next, and its
  history holds epochs 0..epochs_done-1;
- ``log.jsonl`` is a prefix of that history.  It is appended just after
  the checkpoint is written, so it may be one line short; a kill during a
  resumed run's rewrite of the log (before any epoch of that run) may
  leave it shorter still, which the next resume repairs;
- the folder holds nothing but network.npz, log.jsonl, run.json and the
  leftovers a SIGKILL cannot clean up: at most one new temporary file of
  ``saving.save`` per kill (``.network.npz.XXXX.tmp``; ``save`` removes
  it on any exception, but SIGKILL runs no handler; a resume removes the
  ones left before it) and the probe file of the writable-folder check.

At the end a resume runs to completion: it must end with the weights,
the log and the per-epoch numbers of an uninterrupted run of the same
command (shallow has no dropout, so the same weights bit for bit).

The kills are spread over a run's whole life: during startup (interpreter,
imports, MNIST, building the network), during training, during checkpoint
writes (the test watches the folder for save's temporary file and kills as
soon as it appears) and, now and then, anywhere in the next few epochs; the
delays follow the startup and epoch times seen so far.  Run with ``-s`` to
see where the kills landed: "save" (a temporary file was left), "training"
(after the estimated startup, or the checkpoint moved on), "startup" (the
rest, and every kill of a resume with nothing left to train).  The default
test (22 kills) takes about 30 s; ``-m slow`` runs 100 kills (about 2 min).
"""

import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

import numpy
import pytest

import gpunn
from gpunn import saving

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 40
TRAIN = ["train", "shallow", "--epochs", str(EPOCHS), "--limit", "3000",
         "--eval-limit", "300", "--backend", "numpy", "--seed", "1", "--quiet"]
CHECKPOINT, LOG, SETTINGS = "network.npz", "log.jsonl", "run.json"
#: saving.save's temporary file: mkstemp(prefix=".network.npz.", suffix=".tmp")
TEMPORARY = re.compile(r"^\.network\.npz\..+\.tmp$")
#: run_folder.writable's probe, created and removed before training.
PROBE = ".gpunn-write-test"
WAIT = 120  # seconds: no wait in this file is longer

#: These run gpunn as a user does (subprocesses): the system tier.
pytestmark = [pytest.mark.system,
              pytest.mark.skipif(sys.platform == "win32",
                                 reason="SIGKILL is POSIX's")]


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    env["PYTHONPATH"] = REPO
    # One BLAS thread: the polling test needs a core, and OpenBLAS's
    # results depend (in the last bit) on its number of threads; this
    # way every run here computes the same.
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    return env


@contextlib.contextmanager
def _running(args):
    """A ``python -m gpunn ARGS`` process, killed on the way out if it is
    still running (a failed check leaves no training behind)."""
    proc = subprocess.Popen([sys.executable, "-m", "gpunn", *map(str, args)],
                            env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=WAIT)


def _command(run):
    """Go on with the run in ``run``, or start it if it has no checkpoint."""
    if os.path.exists(os.path.join(run, CHECKPOINT)):
        return ["train", "--resume", run, "--epochs", EPOCHS, "--quiet"]
    return [*TRAIN, "--out", run]


def _temporaries(run):
    return {name for name in os.listdir(run) if TEMPORARY.match(name)} \
        if os.path.isdir(run) else set()


def _load(path):
    gpunn.use("numpy", "float32")
    return saving.load(path)


def _log_lines(run):
    """The complete lines of the run's log (a last line without its
    newline is left out), parsed."""
    path = os.path.join(run, LOG)
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        text = f.read().decode()
    return [json.loads(line) for line in text.split("\n")[:-1]]


def _weights(net):
    return [gpunn.backend.to_numpy(p) for p in net.params]


class Watch:
    """What a training process does to its run folder, seen by polling
    every millisecond: when it replaces the checkpoint and which of save's
    temporary files appear."""

    def __init__(self, run, proc):
        self.run, self.proc = run, proc
        self.start = time.monotonic()
        self.checkpoint = self._checkpoint()
        self.replaced = []  # seconds from the start, one per new checkpoint
        self.before = _temporaries(run)
        self.seen = set()  # temporary files that appeared

    def _checkpoint(self):
        try:
            st = os.stat(os.path.join(self.run, CHECKPOINT))
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def look(self):
        now = self._checkpoint()
        if now != self.checkpoint:
            self.checkpoint = now
            self.replaced.append(time.monotonic() - self.start)
        self.seen |= _temporaries(self.run) - self.before

    def until(self, condition, timeout=WAIT):
        """Watch until ``condition(self)`` or until the process exits."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.look()
            if condition(self) or self.proc.poll() is not None:
                return
            time.sleep(0.001)
        raise AssertionError("waited {} s for the training process".format(
            timeout))

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        self.until(lambda w: time.monotonic() >= end)

    def elapsed(self):
        return time.monotonic() - self.start


def _reference(run):
    """An uninterrupted run into ``run``; returns (its network, its
    metadata, the Watch of it)."""
    with _running([*TRAIN, "--out", run]) as proc:
        watch = Watch(run, proc)
        watch.until(lambda w: False)
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert len(watch.replaced) >= 2  # seen with a 1 ms poll: >= 30 ms apart
    assert sorted(os.listdir(run)) == sorted([CHECKPOINT, LOG, SETTINGS])
    net, metadata = _load(os.path.join(run, CHECKPOINT))
    assert metadata["epochs_done"] == EPOCHS
    return net, metadata, watch


class Timing:
    """Running estimates of a process's startup (to its first epoch) and
    of an epoch (training and checkpoint), from what the watches saw, so
    that the delays follow the machine's speed of the moment."""

    def __init__(self):
        self.startups, self.epochs = [], []

    def add(self, watch):
        times = watch.replaced
        self.epochs += [b - a for a, b in zip(times, times[1:])]
        if times:
            self.startups.append(max(times[0] - self.epoch(), 0.01))

    def epoch(self):
        return statistics.median(self.epochs[-20:])

    def startup(self):
        return statistics.median(self.startups[-5:])


def _check_folder(run, before, epochs_before, resumed, stats):
    """The checks after a kill; returns the checkpoint's epochs_done (0 if
    there is none)."""
    if not os.path.isdir(run):  # killed before it made the folder
        assert epochs_before == 0
        stats["before the folder"] += 1
        return 0
    names = set(os.listdir(run))
    new_temporaries = _temporaries(run) - before
    strays = names - {CHECKPOINT, LOG, SETTINGS, PROBE} - _temporaries(run)
    assert not strays, "unexpected files in the run folder: {}".format(strays)
    # One killed process was in at most one save.
    assert len(new_temporaries) <= 1, new_temporaries
    stats["temporary files left"] += len(new_temporaries)
    stats["probe file left"] += PROBE in names

    lines = _log_lines(run)
    if CHECKPOINT not in names:
        assert epochs_before == 0, "the checkpoint disappeared"
        assert lines == [], "a log without a checkpoint"
        return 0
    net, metadata = _load(os.path.join(run, CHECKPOINT))
    done = metadata["epochs_done"]
    assert done >= max(epochs_before, 1), (done, epochs_before)
    history = metadata["history"]
    assert [r["epoch"] for r in history] == list(range(done))
    assert lines == history[:len(lines)], "the log is not the checkpoint's"
    if len(lines) < done - 1:
        # Only a resumed run, killed while rewriting the log from the
        # checkpoint (before its first epoch), leaves the log this short.
        assert resumed and done == epochs_before, (len(lines), done)
        stats["log rewrite cut short"] += 1
    return done


def _kill_sometime(proc, watch, rng, timing, done, kills_left):
    """Kill ``proc`` at a moment drawn from ``rng`` (unless it ends first);
    returns its stderr."""
    startup, epoch = timing.startup(), timing.epoch()
    # A kill in training lands at most m epochs in, so that the kills
    # spread over the whole run instead of finishing it early.
    m = max(1, round(1.5 * (EPOCHS - done) / kills_left))
    mode = rng.choices(["startup", "training", "save", "later"],
                       weights=[30, 40, 22, 8])[0]
    if mode == "startup":  # to the end of the first epoch
        watch.sleep(rng.uniform(0, startup + epoch))
    elif mode == "training":  # in the epoch after the j-th checkpoint
        j, delay = rng.randint(1, m), rng.uniform(0, epoch)
        watch.until(lambda w: len(w.replaced) >= j)
        watch.sleep(delay)
    elif mode == "save":  # as soon as the k-th save's file appears
        k = rng.randint(1, m)
        watch.until(lambda w: len(w.seen) >= k)
    else:  # anywhere in the next 4m epochs (or to the end)
        epochs = min(EPOCHS - done, 4 * m)
        watch.sleep(rng.uniform(0, startup + epochs * epoch))
    if proc.poll() is None:  # not reaped yet: the pid is still its own
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=WAIT)
    watch.look()
    return err


def crash_and_resume(tmp_path, kills, seed):
    """Kill the training of a run ``kills`` times, then let it finish;
    compare with an uninterrupted run.  Returns the statistics."""
    reference, ref_metadata, watch = _reference(str(tmp_path / "reference"))
    timing = Timing()
    timing.add(watch)

    rng = random.Random(seed)
    run = str(tmp_path / "killed")
    stats = {"startup": 0, "training": 0, "save": 0, "finished": 0,
             "before the folder": 0, "temporary files left": 0,
             "probe file left": 0, "log rewrite cut short": 0}
    done = attempts = 0
    while stats["startup"] + stats["training"] + stats["save"] < kills:
        attempts += 1
        assert attempts <= 3 * kills, stats
        kills_left = kills - sum(stats[k] for k in ("startup", "training",
                                                     "save"))
        resumed = os.path.exists(os.path.join(run, CHECKPOINT))
        with _running(_command(run)) as proc:
            watch = Watch(run, proc)
            err = _kill_sometime(proc, watch, rng, timing, done, kills_left)
        timing.add(watch)
        if proc.returncode == 0:  # it finished before the kill
            stats["finished"] += 1
        else:
            assert proc.returncode == -signal.SIGKILL, err
        epochs_before = done
        done = _check_folder(run, watch.before, epochs_before, resumed, stats)
        if resumed and watch.replaced:  # it got past its startup
            assert not watch.before & _temporaries(run), "not removed"
        if proc.returncode != 0:
            stats["save" if _temporaries(run) - watch.before else
                  "training" if epochs_before < EPOCHS and (
                      watch.replaced or watch.elapsed() >= timing.startup())
                  else "startup"] += 1

    # Let it finish.
    with _running(_command(run)) as proc:
        _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    names = set(os.listdir(run))
    assert names - _temporaries(run) <= {CHECKPOINT, LOG, SETTINGS, PROBE}
    # SIGKILL leaves save's temporary files; the next resume removes them.
    assert not _temporaries(run), _temporaries(run)
    with open(os.path.join(run, SETTINGS)) as f, \
            open(tmp_path / "reference" / SETTINGS) as g:
        assert json.load(f) == json.load(g)
    net, metadata = _load(os.path.join(run, CHECKPOINT))
    assert metadata["epochs_done"] == EPOCHS
    lines = _log_lines(run)
    assert [r["epoch"] for r in lines] == list(range(EPOCHS))
    assert lines == metadata["history"]
    for a, b in zip(_weights(net), _weights(reference), strict=True):
        numpy.testing.assert_array_equal(a, b)
    # Not only the weights: every epoch's numbers are the reference's.
    numbers = ("epoch", "training_cost", "validation_accuracy",
               "test_accuracy")
    assert [[r[k] for k in numbers] for r in lines] == \
        [[r[k] for k in numbers] for r in ref_metadata["history"]]

    stats.update(kills=kills, attempts=attempts, seed=seed,
                 epochs_done_at_last_kill=done,
                 startup_s=round(timing.startup(), 3),
                 epoch_s=round(timing.epoch(), 3))
    print("\n{}: {}".format(os.path.basename(__file__), stats))
    return stats


def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    stats = crash_and_resume(tmp_path, kills=22, seed=20240)
    assert stats["startup"] + stats["training"] + stats["save"] == 22


@pytest.mark.slow
def test_many_kills(tmp_path):
    stats = crash_and_resume(tmp_path, kills=100, seed=7)
    assert stats["startup"] + stats["training"] + stats["save"] == 100
