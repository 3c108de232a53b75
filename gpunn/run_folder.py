"""run_folder.py
~~~~~~~~~~~~~~~~

A run's folder, and the one class that reads and writes it.  ``gpunn
train`` makes one per run (``--out``, default runs/NAME-DATE-TIME);
``gpunn reproduce`` and ``gpunn sweep`` one per run of a table, under
OUT/runs/KEY/run-R/.  It holds:

    run.json      the run's settings: what ``gpunn train`` was told and
                  the defaults it took (indented JSON, written once)
    log.jsonl     a JSON record per epoch done: accuracies, cost,
                  seconds, backend, dtype, device, threads
    network.npz   chapter 6's checkpoint: the network and its metadata
                  (gpunn.saving), the log's records as its ``history``;
                  rewritten atomically at the end of every epoch
    network.json  a network of chapters 1 and 3 (the book's JSON), saved
                  at the end of its run: these keep no checkpoint
    output.txt    what the ``gpunn train`` processes that Dask workers ran
                  for it printed (gpunn.cluster), and ``.lock``, held by
                  the one that runs now

After each epoch the checkpoint is saved first, then the epoch's line
appended to the log: a kill between the two leaves the log a line
short, and ``start_log`` (at ``--resume``) writes it again from the
checkpoint's history.  ``gpunn train --resume`` so ends with the weights
an uninterrupted run gives.
"""

import contextlib
import json
import os
import shutil

from gpunn.compute import backend

SETTINGS, LOG, CHECKPOINT, BOOK_NETWORK = ("run.json", "log.jsonl",
                                           "network.npz", "network.json")
OUTPUT, LOCK = "output.txt", ".lock"
#: The file that ``writable`` makes and removes.
PROBE = ".gpunn-write-test"


class Interrupted(Exception):
    """Training stopped by Ctrl-C; the message says what the run
    folders keep and how to go on."""


class RunFolder:
    """The files of the run in the folder ``path`` (a str, as given:
    messages name the files by it)."""

    def __init__(self, path):
        self.path = path

    @property
    def settings_path(self):
        return os.path.join(self.path, SETTINGS)

    @property
    def log_path(self):
        return os.path.join(self.path, LOG)

    @property
    def checkpoint_path(self):
        return os.path.join(self.path, CHECKPOINT)

    @property
    def book_network_path(self):
        return os.path.join(self.path, BOOK_NETWORK)

    @property
    def output_path(self):
        return os.path.join(self.path, OUTPUT)

    @property
    def lock_path(self):
        return os.path.join(self.path, LOCK)

    @contextlib.contextmanager
    def new(self):
        """Make the folder for a new run; if the run fails before its
        first checkpoint (bad data, a limit below one mini-batch, the
        device), take away what this made.  Ctrl-C (``Interrupted``)
        keeps it: --resume starts such a run over."""
        made = []
        path = os.path.abspath(self.path)
        while not os.path.exists(path):
            made.append(path)
            path = os.path.dirname(path)
        os.makedirs(self.path, exist_ok=True)
        writable(self.path)
        try:
            yield self
        except Interrupted:
            raise
        except Exception:
            if made and not self.has_checkpoint():
                shutil.rmtree(made[-1], ignore_errors=True)
            raise

    # ------------------------------------------------------------ run.json

    def write_settings(self, settings):
        """Write the dict ``settings`` as run.json."""
        with open(self.settings_path, "w") as f:
            json.dump(settings, f, indent=1)

    def settings(self):
        """run.json's dict; OSError or ValueError where it cannot be
        read."""
        with open(self.settings_path) as f:
            return json.load(f)

    # ------------------------------------------------------------ log.jsonl

    def records(self):
        """log.jsonl's records, a dict per epoch; OSError where there is
        no log."""
        with open(self.log_path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def complete_records(self):
        """The records of a log that a process may be writing now: none
        where there is no log yet, and not the line being written."""
        try:
            with open(self.log_path) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        records = []
        for line in text.split("\n")[:-1]:
            try:
                records.append(json.loads(line))
            except ValueError:
                break
        return records

    def start_log(self, records=()):
        """Write the log anew with ``records`` (at --resume, those of the
        checkpoint: the log says what it holds), whole, renamed into
        place."""
        with open(self.log_path + ".tmp", "w") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        os.replace(self.log_path + ".tmp", self.log_path)

    def append(self, record):
        """Add an epoch's record to the log."""
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------ networks

    def has_checkpoint(self):
        return os.path.exists(self.checkpoint_path)

    def save_epoch(self, net, experiment, settings, records):
        """After an epoch of chapter 6: the checkpoint of ``net``, with
        ``records`` (every epoch's, the one just done last) as its
        history, then that epoch's line of the log."""
        from gpunn import saving
        saving.save(net, self.checkpoint_path, experiment=experiment,
                    settings=settings, epochs_done=len(records),
                    history=records, best_validation_accuracy=max(
                        r["validation_accuracy"] for r in records),
                    backend=backend.name())
        self.append(records[-1])

    def load_checkpoint(self):
        """``(net, metadata)`` of the checkpoint (gpunn.saving.load)."""
        from gpunn import saving
        return saving.load(self.checkpoint_path)

    def remove_partial_saves(self):
        """Remove what a kill left of a save cut short (saving.save's
        temporary file, start_log's): never read."""
        for name in os.listdir(self.path):
            if name.endswith(".tmp") and name.startswith(
                    ("." + CHECKPOINT + ".", LOG)):
                os.remove(os.path.join(self.path, name))

    def has_book_network(self):
        return os.path.exists(self.book_network_path)

    def save_book_network(self, net):
        """Save a network of chapters 1 and 3 (network2's ``save``)."""
        net.save(self.book_network_path)

    def saved_network(self):
        """The path of the run's network (the checkpoint, else the
        network of chapters 1 and 3), or None where it saved none."""
        for path in (self.checkpoint_path, self.book_network_path):
            if os.path.exists(path):
                return path
        return None


def writable(folder):
    """Fail before training, not after the first epoch, where
    ``folder`` cannot be written to."""
    probe = os.path.join(folder, PROBE)
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OSError("cannot write to the run folder {}: {}".format(
            folder, e.strerror)) from None
