"""runs.py
~~~~~~~~~

What ``gpunn reproduce`` and ``gpunn sweep`` share: the runs of a table
trained on a Dask cluster (gpunn.cluster does the Dask side), their
progress on the screen (a line when a run starts, goes on from a
checkpoint or ends; on a terminal a bar per run), each finished run's
compact log written into OUT/logs, and the command's line in
OUT/invocations.jsonl (gpunn.reproduce keeps that folder's files).
"""

import contextlib
import os
import queue
import sys
import time

from gpunn.run_folder import Interrupted, writable


def prepare(out):
    """Make the results folder ``out`` and its logs folder, and fail now
    where it cannot be written to."""
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    writable(out)


def checkpoints(args):
    """Where the runs' folders go: --checkpoints, else OUT/runs; absolute,
    as workers may run elsewhere."""
    return os.path.abspath(args.checkpoints or os.path.join(args.out, "runs"))


def cluster(args):
    """``with runs.cluster(args) as (client, backend name, where)``: the
    cluster of the runs (gpunn.cluster.for_runs) that the options say,
    and their backend: --backend, else $GPUNN_BACKEND, else auto."""
    from gpunn import cluster
    return cluster.for_runs(
        args.scheduler, args.jobs,
        args.backend or os.environ.get("GPUNN_BACKEND") or "auto")


def backend_words(name):
    return "each worker's own backend (auto)" if name == "auto" else name


def train_on(client, planned, args, backend_name, out):
    """Train ``planned`` on ``client``'s workers, writing each finished
    run's compact log into out/logs.  Returns the runs finished, those
    failed (with why) and the number trained (not done already)."""
    from gpunn import cluster, reproduce
    options = {"backend": backend_name, "dtype": args.dtype,
               "limit": args.limit, "eval_limit": args.eval_limit}
    finished, failed, trained = [], [], []

    def say(line):
        print(line, flush=True)

    display = Display(say)
    try:
        ends = cluster.train_all(client, planned, args.epochs, options,
                                 threads=args.threads, show=display.show)
        with contextlib.closing(ends):
            for run, result in ends:
                if "failed" in result:
                    failed.append((run, result["failed"]))
                    say("{}: FAILED {}".format(run.name, result["failed"]))
                    continue
                reproduce.write_log(run, out, result)
                finished.append(run)
                if result["seconds"] is None:
                    say("{}: done already".format(run.name))
                else:
                    trained.append(run)
                    say("{}: done in {}".format(
                        run.name, reproduce.duration(result["seconds"])))
    except KeyboardInterrupt:
        raise Interrupted("The runs keep their checkpoints (in {}): the same "
                          "command goes on from them.".format(
                              checkpoints(args))) from None
    finally:
        display.close()
    return finished, failed, len(trained) + len(failed)


def record_invocation(args, out, started, start, planned, trained, failed,
                      where, backend_name):
    """The command's line of out/invocations.jsonl: its words, its runs,
    where they ran and its wall time (since ``start``, perf_counter's)."""
    from gpunn import reproduce
    reproduce.record_invocation(
        out, ["gpunn"] + args.argv, started,
        round(time.perf_counter() - start, 1), len(planned), trained,
        len(failed), where, backend_name)


def failures(failed):
    """The exit status: 1 (saying which) where runs failed, else 0."""
    if failed:
        print("gpunn: error: {} run(s) failed: {}".format(
            len(failed), ", ".join(run.name for run, _ in failed)),
            file=sys.stderr)
        return 1
    return 0


class Display:
    """The runs' progress: a line when a run starts, goes on from a
    checkpoint or ends, and on a terminal a bar per run, its epochs and
    validation accuracy (elsewhere, a line per epoch)."""

    def __init__(self, say):
        self.say = say
        self.bars = {}
        self.terminal = sys.stderr.isatty()

    def show(self, events, wait=0.0):
        """Show the events come in ``events`` (a queue of the event
        log's (timestamp, message)), waiting at most ``wait`` seconds for
        the first."""
        try:
            _, message = events.get(timeout=wait) if wait else \
                events.get_nowait()
        except queue.Empty:
            return
        while True:
            self._show(message)
            try:
                _, message = events.get_nowait()
            except queue.Empty:
                return

    def _show(self, m):
        run = m["run"]
        if "started" in m:
            self._line("{}: {} on {} (seed {})".format(
                run, "resumed at epoch {}".format(m["started"])
                if m["started"] else "started", m["worker"], m["seed"]))
            if self.terminal:
                from tqdm import tqdm
                if run in self.bars:  # run again after its worker died
                    self.bars.pop(run).close()
                taken = {abs(bar.pos) for bar in self.bars.values()}
                line = min(set(range(len(taken) + 1)) - taken)
                self.bars[run] = tqdm(total=m["epochs"], initial=m["started"],
                                      desc=run, unit="epoch", leave=False,
                                      position=line, file=sys.stderr)
        elif "waiting" in m:
            self._line("{}: waiting for the process that trains it on {}"
                       .format(run, m["worker"]))
        elif "record" in m:
            r = m["record"]
            if run in self.bars:
                self.bars[run].set_postfix_str("validation {:.2%}".format(
                    r["validation_accuracy"]))
                self.bars[run].update(1)
            else:
                self._line("{}: epoch {}/{}, validation accuracy {:.2%}".format(
                    run, r["epoch"] + 1, m["epochs"], r["validation_accuracy"]))
        elif "stopped" in m:
            if run in self.bars:
                self.bars.pop(run).close()

    def _line(self, line):
        if self.bars:
            from tqdm import tqdm
            tqdm.write(line, file=sys.stdout)
        else:
            self.say(line)

    def close(self):
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
