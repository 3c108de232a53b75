"""reproduce.py
~~~~~~~~~~~~~~~~

Every accuracy the book reports, run again with the book's settings:
``gpunn reproduce [chapter1|chapter3|chapter6|all]``.

``ROWS`` is the results table as data: for each of the book's numbers,
what it measures and the ``gpunn train`` arguments of one run.  A run is
a ``gpunn train`` command with its own run folder, run as a task on a
Dask cluster (gpunn.cluster: one run per CPU core, or several per GPU,
on this machine or on a scheduler's workers), so that a crash costs
one run, and a chapter-6 run that was cut short goes on from its
checkpoint (``gpunn train --resume``) when Dask runs it again or when
``reproduce`` is run again.

The output folder (``--out``) holds:

- ``runs/KEY/run-R/``: the run folders (networks, full logs; not
  committed), or ``--checkpoints``/KEY/run-R/ where that is given;
- ``logs/KEY-runR.jsonl``: each finished run's compact log, a header line
  (settings, backend, device) and one line per epoch: what docs/ keeps;
- ``table.md`` and ``results.json``: the table, made from ``logs/`` alone
  (``gpunn reproduce --report DIR`` makes it again);
- ``invocations.jsonl``: each ``reproduce`` command, where its runs went
  and its wall time.

Run k of every row has seed k (1, 2, 3, ...): a table can be run again.
"""

import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import gpunn
from gpunn import experiments
from gpunn.compute import backend
from gpunn.run_folder import RunFolder

CHAPTERS = ("chapter1", "chapter3", "chapter6")

#: How a row's number is read from a run's per-epoch accuracies.
METRICS = {
    "peak_test": "the best epoch's test accuracy",
    "peak_validation": "the best epoch's validation accuracy",
    "test_at_best_validation": "the test accuracy at the epoch of best "
                               "validation accuracy (network3's printout)",
    "vote": "the plurality vote of five double_fc_dropout networks on the "
            "test data",
}


@dataclass(frozen=True)
class Row:
    """One of the book's numbers and how to run it."""
    key: str
    chapter: str
    label: str
    book: float          # the book's accuracy, in %
    metric: str          # a key of METRICS
    train: tuple         # ``gpunn train`` arguments, seed and folder aside
    epochs: int
    expanded: bool = False  # expanded data: 250,000 images an epoch


_NETWORK, _NETWORK2 = experiments.NETWORKS["network"], experiments.NETWORKS["network2"]


def _ch1(n, book):
    return Row("ch1-{}".format(n), "chapter1",
               "network.py [784, {}, 10], quadratic cost, eta {}".format(
                   n, _NETWORK.eta), book, "peak_test",
               ("network", "--n", str(n), "--eta", str(_NETWORK.eta),
                "--epochs", str(_NETWORK.epochs)), _NETWORK.epochs)


def _ch3(key, n, book, metric, eta=_NETWORK2.eta, lmbda=0.0,
         init=_NETWORK2.init, epochs=_NETWORK2.epochs):
    label = "network2.py [784, {}, 10], cross-entropy, eta {}{}, {} init".format(
        n, eta, ", lmbda {}".format(lmbda) if lmbda else "", init)
    if epochs != _NETWORK2.epochs:
        label += ", {} epochs".format(epochs)
    return Row(key, "chapter3", label, book, metric,
               ("network2", "--n", str(n), "--eta", str(eta), "--lmbda",
                str(lmbda), "--init", init, "--epochs", str(epochs)), epochs)


def _ch6(key, label, train, expanded=False):
    """A chapter-6 row: the experiment ``key`` of gpunn.experiments, its
    epochs and the book's number from there."""
    e = experiments.EXPERIMENTS[key]
    return Row(key, "chapter6", label, e.book_accuracy,
               "test_at_best_validation", train, e.epochs, expanded)


#: The book's numbers.  Those of the models' own settings come from
#: gpunn.experiments; the others (the book's runs with other n, eta,
#: lmbda or initializer) are stated here, once.
ROWS = (
    _ch1(30, _NETWORK.book_accuracy),
    _ch1(100, 96.59),
    _ch3("ch3-30", 30, 95.49, "peak_test"),
    _ch3("ch3-100", 100, 96.82, "peak_test"),
    _ch3("ch3-30-l2", 30, _NETWORK2.book_accuracy, "peak_test",
         lmbda=_NETWORK2.lmbda),
    _ch3("ch3-100-l2", 100, 97.92, "peak_validation", lmbda=5.0),
    _ch3("ch3-100-l2-60", 100, 98.04, "peak_validation", eta=0.1, lmbda=5.0,
         init="default", epochs=60),
    _ch6("shallow", "100 sigmoid neurons, softmax, eta 0.1", ("shallow",)),
    _ch6("basic_conv", "conv-pool, 100 sigmoid neurons, softmax, eta 0.1",
         ("basic_conv",)),
    _ch6("dbl_conv", "two conv-pool layers, sigmoid, eta 0.1",
         ("dbl_conv", "--activation", "sigmoid")),
    _ch6("dbl_conv_relu", "two conv-pool layers, ReLU, eta 0.03, lmbda 0.1",
         ("dbl_conv_relu",)),
    *[_ch6("expanded_data_{}".format(n),
           "expanded data, {} ReLU neurons".format(n),
           ("expanded_data", "--n", str(n)), expanded=True)
      for n in (100, 300, 1000)],
    *[_ch6("expanded_data_double_fc_{}".format(n),
           "expanded data, two fully connected layers of {}".format(n),
           ("expanded_data_double_fc", "--n", str(n)), expanded=True)
      for n in (100, 300, 1000)],
    _ch6("double_fc_dropout", "expanded data, two fully connected layers of "
         "1000, dropout 0.5, eta 0.03, 40 epochs", ("double_fc_dropout",),
         expanded=True),
    Row("vote", "chapter6", "the vote of five double_fc_dropout networks",
        experiments.BOOK_VOTE_ACCURACY, "vote", (),
        experiments.EXPERIMENTS["double_fc_dropout"].epochs, True),
)

VOTERS = 5  # the book's ensemble: five networks
VOTE_FILE = "vote.json"


def rows(names):
    """The rows that ``names`` pick: chapters (CHAPTERS), "all", or rows'
    keys (e.g. "shallow", "ch1-30"), in ROWS order."""
    keys = {row.key for row in ROWS}
    unknown = set(names) - set(CHAPTERS) - keys - {"all"}
    if unknown:
        raise gpunn.ConfigError(
            "unknown chapter or row {}: choose from all, {}, or rows {}".format(
                ", ".join(sorted(unknown)), ", ".join(CHAPTERS),
                ", ".join(row.key for row in ROWS)))
    return [row for row in ROWS
            if "all" in names or row.chapter in names or row.key in names]


# ---------------------------------------------------------------- running

@dataclass(frozen=True)
class Run:
    """Run ``index`` of ``row``: its folder and how far it got."""
    row: Row
    index: int
    folder: str

    @property
    def seed(self):
        return self.index + 1

    @property
    def name(self):
        return "{} run {}".format(self.row.key, self.index)

    @property
    def log_name(self):
        return "{}-run{}.jsonl".format(self.row.key, self.index)

    @property
    def run_folder(self):
        return RunFolder(self.folder)

    def records(self):
        """The records of the run's log; none where it has none yet."""
        try:
            return self.run_folder.records()
        except FileNotFoundError:
            return []

    def finished(self, epochs):
        saved = self.run_folder.has_checkpoint() \
            if self.row.chapter == "chapter6" else \
            self.run_folder.has_book_network()
        return saved and len(self.records()) >= epochs

    def command(self, epochs, options):
        """The ``gpunn train`` command line of this run, or of its resumption
        where a chapter-6 run left a checkpoint.  ``options``: backend,
        dtype (default: float64 for chapters 1 and 3, as the book's NumPy
        code; float32 for chapter 6, Theano's floatX on a GPU), limit and
        eval_limit."""
        gpunn_command = [sys.executable, "-m", "gpunn", "train"]
        backend_option = ["--backend", options["backend"]] \
            if options.get("backend") else []
        if self.row.chapter == "chapter6" and self.run_folder.has_checkpoint():
            return gpunn_command + ["--resume", self.folder, "--quiet"] + \
                backend_option + ["--epochs", str(epochs)]
        dtype = options.get("dtype") or (
            "float32" if self.row.chapter == "chapter6" else "float64")
        train = list(self.row.train) + backend_option + ["--dtype", dtype]
        for name in ("limit", "eval_limit"):
            if options.get(name):
                train += ["--" + name.replace("_", "-"), str(options[name])]
        if epochs != self.row.epochs:
            if "--epochs" in train:
                train[train.index("--epochs") + 1] = str(epochs)
            else:
                train += ["--epochs", str(epochs)]
        return gpunn_command + train + [
            "--seed", str(self.seed), "--out", self.folder, "--quiet"]


def plan(chapter_rows, runs, folder):
    """The runs of a table: ``runs`` per row (the vote needs VOTERS of
    double_fc_dropout), each with its folder folder/KEY/run-R."""
    planned = []
    for row in chapter_rows:
        if row.metric == "vote":
            continue
        count = runs
        if row.key == "double_fc_dropout" and any(r.metric == "vote"
                                                  for r in chapter_rows):
            count = max(runs, VOTERS)
        for index in range(count):
            planned.append(Run(row, index, os.path.join(
                folder, row.key, "run-{}".format(index))))
    return planned


def default_jobs(gpus):
    """How many runs go side by side: one per CPU core on NumPy (``gpus``
    0; each run with one BLAS thread); on CuPy four per GPU, as a
    mini-batch of 10 leaves most of a GPU idle, and no more than the CPU
    cores that feed them (the cores this process may use)."""
    cores = backend.cores()
    return max(1, min(cores, 4 * gpus)) if gpus else cores


# ---------------------------------------------------------------- logs

def compact_log(run, settings, records):
    """The lines of ``run``'s compact log, from its settings (run.json)
    and per-epoch records: a header, then one line per epoch (accuracies
    as fractions, seconds rounded to 0.01)."""
    header = {"row": run.row.key, "run": run.index, "book": run.row.book,
              "metric": run.row.metric, "settings": settings,
              "backend": records[0]["backend"], "dtype": records[0]["dtype"],
              "device": device_name(records[0]["device"]),
              "gpunn": gpunn.__version__}
    lines = [header]
    for r in records:
        line = {"epoch": r["epoch"],
                "validation_accuracy": r["validation_accuracy"],
                "test_accuracy": r["test_accuracy"],
                "seconds": round(r["seconds"], 2)}
        if "training_cost" in r:
            line["training_cost"] = float("{:.6g}".format(r["training_cost"]))
        lines.append(line)
    return lines


def write_log(run, out, result):
    """Write ``run``'s compact log into out/logs from ``result`` (what
    its task returned: settings, records, ``resumed_at`` and ``seconds``,
    the wall time of the process that just trained it, which adds to the
    header's ``wall_seconds``: a resumed run's processes add up)."""
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    path = os.path.join(out, "logs", run.log_name)
    lines = compact_log(run, result["settings"], result["records"])
    seconds = result["seconds"]
    try:
        before = read_jsonl(path)[0].get("wall_seconds")
    except (OSError, ValueError, IndexError, AttributeError):
        before = None
    if before is None and seconds is not None:
        # A run resumed from a checkpoint that earlier processes wrote (a
        # session before this one, or a worker that died): their epochs'
        # seconds stand in for their wall time, start-up aside.
        done = result["records"][:result.get("resumed_at", 0)]
        seconds += sum(r["seconds"] for r in done)
    if before is not None or seconds is not None:
        lines[0]["wall_seconds"] = round((before or 0.0) + (seconds or 0.0), 2)
    _write_jsonl(path, lines)


def device_name(device):
    """The device a log names: the GPU's name, or for "cpu" the CPU's
    model and core count."""
    if device != "cpu":
        return device
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "{} ({} cores)".format(model, os.cpu_count())


def run_metric(metric, epochs):
    """A run's number, in %, from its per-epoch records (None if none)."""
    if metric == "peak_test":
        values = [e["test_accuracy"] for e in epochs]
    elif metric == "peak_validation":
        values = [e["validation_accuracy"] for e in epochs]
    else:  # network3: the test accuracy of the last best validation epoch
        values = [e["test_accuracy"] for e in epochs
                  if e["test_accuracy"] is not None][-1:]
    return round(100 * max(values), 2) if values else None


# ---------------------------------------------------------------- the table

def results(logs_folder):
    """One dict per row that has logs in ``logs_folder``, in ROWS order:
    the book's number, the best run's (as the book reports), every run's,
    epochs, mean wall time per run, backend, dtype and device.  The vote's
    row comes from logs_folder/vote.json, where ``write_vote`` wrote it."""
    logs = {}
    vote = None
    if os.path.exists(os.path.join(logs_folder, VOTE_FILE)):
        vote = _read_json(os.path.join(logs_folder, VOTE_FILE))
    for name in sorted(os.listdir(logs_folder)):
        if name.endswith(".jsonl"):
            lines = read_jsonl(os.path.join(logs_folder, name))
            logs.setdefault(lines[0]["row"], []).append(lines)
    table = []
    for row in ROWS:
        if row.metric == "vote":
            if vote is not None:
                table.append(dict(vote, key=row.key, label=row.label,
                                  book=row.book,
                                  difference=round(vote["gpunn"] - row.book, 2)))
            continue
        if row.key not in logs:
            continue
        runs = sorted(logs[row.key], key=lambda lines: lines[0]["run"])
        values = [run_metric(row.metric, lines[1:]) for lines in runs]
        best = max(values)
        header = runs[0][0]
        table.append({
            "key": row.key, "label": row.label, "book": row.book,
            "gpunn": best, "difference": round(best - row.book, 2),
            "runs": values, "metric": row.metric,
            "epochs": len(runs[0]) - 1,
            "book_settings": all(
                len(lines) - 1 == row.epochs and
                not lines[0]["settings"].get("limit") and
                not lines[0]["settings"].get("eval_limit") for lines in runs),
            "wall_seconds": round(sum(_wall_seconds(lines) for lines in runs)
                                  / len(runs), 1),
            "backend": header["backend"], "dtype": header["dtype"],
            "device": header["device"]})
    return table


def markdown(table):
    """The results table in Markdown."""
    lines = ["| row | network and settings | the book | gpunn (best run) | "
             "difference | runs | epochs | wall time per run | backend | device |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |"]
    for r in table:
        runs = ", ".join("{:.2f}".format(v) for v in r["runs"])
        lines.append("| {} | {}{} | {:.2f}% | {:.2f}% | {:+.2f} | {} | {} | "
                     "{} | {} ({}) | {} |".format(
                         r["key"], r["label"], "" if r["book_settings"] else
                         " (NOT the book's settings)",
                         r["book"], r["gpunn"], r["difference"], runs,
                         r["epochs"], duration(r["wall_seconds"]),
                         r["backend"], r["dtype"], r["device"]))
    lines.append("")
    for metric in sorted({r["metric"] for r in table},
                         key=list(METRICS).index):
        rows = ", ".join(r["key"] for r in table if r["metric"] == metric)
        lines.append("- {}: {}.".format(rows, METRICS[metric]))
    return "\n".join(lines) + "\n"


def report(out):
    """Write out/table.md and out/results.json from out/logs; returns
    the table."""
    table = results(os.path.join(out, "logs"))
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(markdown(table))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(table, f, indent=1)
    return table


def in_progress(folder):
    """The chapter-6 runs under ``folder`` (a --checkpoints folder,
    KEY/run-R/) that hold a checkpoint: one dict each, in ROWS order,
    with the row, the run, the epochs done of the row's epochs and their
    seconds.  These are the runs that a session commits to go on in the
    next (docs/RESULTS.md lists them)."""
    found = []
    for row in ROWS:
        base = os.path.join(folder, row.key)
        if row.chapter != "chapter6" or not os.path.isdir(base):
            continue
        indices = sorted(int(name[len("run-"):]) for name in os.listdir(base)
                         if name.startswith("run-") and name[4:].isdigit())
        for index in indices:
            run = Run(row, index, os.path.join(base, "run-{}".format(index)))
            if run.run_folder.has_checkpoint():
                records = run.records()
                found.append({"key": row.key, "run": index,
                              "epochs_done": len(records), "epochs": row.epochs,
                              "seconds": round(sum(r["seconds"] for r in records), 1)})
    return found


def markdown_in_progress(runs):
    """``in_progress``'s runs as a Markdown table."""
    lines = ["| run | epochs done | training time so far |",
             "| --- | ---: | ---: |"]
    for r in runs:
        lines.append("| {} run {} | {} of {} | {} |".format(
            r["key"], r["run"], r["epochs_done"], r["epochs"],
            duration(r["seconds"])))
    return "\n".join(lines) + "\n"


def voters(finished):
    """The first VOTERS double_fc_dropout runs of ``finished``, or None
    where fewer finished."""
    chosen = sorted((r for r in finished if r.row.key == "double_fc_dropout"),
                    key=lambda r: r.index)[:VOTERS]
    return chosen if len(chosen) == VOTERS else None


def vote(voters, epochs):
    """The vote of the networks of the runs ``voters`` (a task: it reads
    their folders), as the row of ``results`` needs it; ``epochs``, the
    command's --epochs (the book's settings where None)."""
    from gpunn.ensemble import ensemble
    nets = [r.run_folder.load_checkpoint()[0] for r in voters]
    _, _, test = gpunn.load_data()
    start = time.perf_counter()
    accuracy, _, _ = ensemble(nets, test)
    first = voters[0].records()[0]
    settings = voters[0].run_folder.settings()
    return {"gpunn": round(100 * accuracy, 2), "runs": [], "metric": "vote",
            "voters": [r.log_name for r in voters],
            "epochs": len(voters[0].records()),
            "book_settings": not epochs and not settings.get("limit") and
            not settings.get("eval_limit"),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "backend": first["backend"],
            "dtype": first["dtype"], "device": device_name(first["device"])}


def write_vote(vote, out):
    with open(os.path.join(out, "logs", VOTE_FILE), "w") as f:
        json.dump(vote, f, indent=1)


def record_invocation(out, command, started, wall_seconds, runs, trained,
                      failed, where, backend_name):
    """Add a line to out/invocations.jsonl: the ``command`` (its words),
    when it ``started`` and its wall time, its runs (those ``trained``,
    not done already, and those ``failed``), ``where`` they ran, in
    words, and the backend."""
    with open(os.path.join(out, "invocations.jsonl"), "a") as f:
        f.write(json.dumps({
            "command": command, "started": started,
            "wall_seconds": wall_seconds, "runs": runs, "trained": trained,
            "failed": failed, "where": where, "backend": backend_name},
            separators=(",", ":")) + "\n")


def _wall_seconds(lines):
    """A run's wall time, from its compact log: its processes' time where
    the header has it (startup included), else its epochs' (older logs)."""
    if "wall_seconds" in lines[0]:
        return lines[0]["wall_seconds"]
    return sum(e["seconds"] for e in lines[1:])


def duration(seconds):
    if seconds < 10:
        return "{:.1f} s".format(seconds)
    if seconds < 120:
        return "{:.0f} s".format(seconds)
    if seconds < 7200:
        return "{:.1f} min".format(seconds / 60)
    return "{:.1f} h".format(seconds / 3600)


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def read_jsonl(path):
    """The lines of the JSON-lines file ``path`` (a compact log), each
    parsed; none where there is no such file."""
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def _write_jsonl(path, lines):
    with open(path + ".tmp", "w") as f:
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    os.replace(path + ".tmp", path)


def now():
    return datetime.datetime.now().isoformat(timespec="seconds")
