"""gpunn.bench.report
~~~~~~~~~~~~~~~~~~

Turns the benchmark suite's pytest-benchmark JSON files (one per machine)
into a markdown report, and optionally a PNG chart::

    python -m gpunn.bench.report RESULT.json [RESULT2.json ...]
                                 [--markdown OUT.md] [--png OUT.png]

The report has a "Machines" table (one row per file) and an epoch-time
table: one row per (model, mini-batch size) and, for each machine and
device, gpunn's and torch's seconds per 50,000-image epoch, their ratio
and gpunn's fraction of the machine's measured matrix-multiply rate.

Only benchmarks whose ``extra_info`` carries the suite's keys (model,
mini_batch_size, framework, device, backend, epoch_seconds) are reported;
other pytest-benchmark tests in the same file are skipped.  matplotlib is
needed only for ``--png`` and is imported only then.
"""

import argparse
import datetime
import json
import math
import os
import sys

from gpunn.bench.machine import cuda_api_version_string
from gpunn.experiments import EXPERIMENTS

DASH = "–"  # an empty cell: that backend was not measured on that machine
REQUIRED_KEYS = ("model", "mini_batch_size", "framework", "device",
                 "backend", "epoch_seconds")
DEVICES = ("cpu", "cuda")


class ReportError(Exception):
    """A result file that cannot be read, or a missing optional package."""


class Run:
    """One result file: one run of the suite on one machine.

    ``results[(model, mini_batch_size, framework, device)]`` is that
    benchmark's ``extra_info`` dict; ``machine`` is the suite's
    ``machine_info["gpunn"]`` dict (empty for files without it)."""

    def __init__(self, path, doc):
        self.path = path
        self.machine_info = doc.get("machine_info") or {}
        self.machine = self.machine_info.get("gpunn") or {}
        self.datetime = doc.get("datetime")
        self.results = {}
        self.busy = {}  # the same keys, measured next to a busy process
        for bench in doc["benchmarks"]:
            info = bench.get("extra_info") if isinstance(bench, dict) else None
            if (not isinstance(info, dict)
                    or any(info.get(k) is None for k in REQUIRED_KEYS)):
                continue  # not one of the suite's epoch-time benchmarks
            key = (info["model"], info["mini_batch_size"],
                   info["framework"], info["device"])
            results = self.busy if info.get("load") == "busy" else \
                self.results
            # The same backend twice in one file (e.g. two parametrizations
            # that differ only in a label): keep the faster, the one less
            # disturbed by the rest of the machine.
            old = results.get(key)
            if old is None or info["epoch_seconds"] < old["epoch_seconds"]:
                results[key] = info
        self.label = self.default_label()

    def cpu_label(self):
        """E.g. "AMD EPYC 7B13, 2 cores"."""
        cpu = self.machine_info.get("cpu") or {}
        model = (self.machine.get("cpu_model") or cpu.get("brand_raw")
                 or self.machine_info.get("processor") or self.machine_info.get("node")
                 or "unknown CPU")
        count = self.machine.get("cpu_count") or cpu.get("count")
        return f"{model}, {count} cores" if count else model

    def default_label(self):
        """The name given to ``gpunn bench --name``, else the GPU's name
        where the machine has one, else its CPU's."""
        return (self.machine.get("name") or self.machine.get("gpu_name")
                or self.cpu_label())

    def devices(self):
        """The devices measured in this run, CPU first."""
        present = {key[3] for key in self.results}
        return [d for d in DEVICES if d in present] + sorted(present - set(DEVICES))


def read_run(path):
    """The ``Run`` in the pytest-benchmark JSON file ``path``; raises
    ``ReportError`` naming the file if it is not such a file."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ReportError(f"{path}: not a pytest-benchmark result file "
                          "(no \"benchmarks\" list)")
    return Run(path, doc)


def load_results(paths):
    """A list of ``Run``, one per file in ``paths``, in that order.  Two
    machines with the same label get " #2", " #3" so columns stay apart."""
    runs = [read_run(path) for path in paths]
    seen = {}
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        if seen[run.label] > 1:
            run.label = f"{run.label} #{seen[run.label]}"
    return runs


# --- formatting -----------------------------------------------------------

def significant(x):
    """``x`` to 3 significant digits, without an exponent: 33.5, 0.412, 1230."""
    if x is None or not math.isfinite(x) or x <= 0:
        return DASH
    rounded = float(f"{x:.3g}")
    decimals = max(0, 2 - math.floor(math.log10(rounded)))
    return f"{rounded:.{decimals}f}"


def rate(x):
    """A GFLOP/s rate: whole numbers from 100 up (1187, not 1190)."""
    if x is not None and math.isfinite(x) and x >= 100:
        return f"{x:.0f}"
    return significant(x)


def ratio(a, b):
    """a / b to 2 decimals, or a dash where either is missing."""
    if a is None or b is None or not b:
        return DASH
    return f"{a / b:.2f}"


def cell(value):
    """``value`` as a markdown table cell: a dash for None, no bare "|"."""
    if value is None or value == "":
        return DASH
    return str(value).replace("|", "\\|")


def table(header, rows, text_columns=None):
    """A markdown table.  The first ``text_columns`` columns (all if None)
    are left-aligned; the rest hold numbers and are right-aligned, so that
    their digits line up when rendered."""
    if text_columns is None:
        text_columns = len(header)
    align = ["---"] * text_columns + ["--:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def date(text):
    """pytest-benchmark's ISO datetime as "2026-11-21 14:02 UTC"."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return text
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M UTC")
    return when.strftime("%Y-%m-%d %H:%M")


# --- the report -------------------------------------------------------------

def driver_versions(machine):
    """``(nvidia_driver, cuda_driver_api)`` of a machine description, e.g.
    ("570.172.08", "12.8").  Files from before these two were recorded
    hold one ``cuda_driver``: CuPy's ``driverGetVersion()`` number
    ("12080", read as "12.8"), or else a driver version string."""
    nvidia, api = machine.get("nvidia_driver"), machine.get("cuda_driver_api")
    old = machine.get("cuda_driver")
    if old is not None and nvidia is None and api is None:
        if str(old).isdigit():
            api = cuda_api_version_string(old)
        else:
            nvidia = str(old)
    return nvidia, api


def machines_table(runs):
    """One row per run: what it ran on and with which libraries."""
    header = ["Machine", "CPU", "threads", "Python", "NumPy", "CuPy", "torch",
              "BLAS", "driver", "driver CUDA", "matmul GFLOP/s cpu",
              "matmul GFLOP/s gpu", "date", "file"]
    rows = []
    for run in runs:
        m = run.machine
        rates = m.get("matmul_gflops") or {}
        rows.append([run.label, run.cpu_label(), m.get("threads"),
                     run.machine_info.get("python_version"), m.get("numpy"),
                     m.get("cupy"), m.get("torch"), m.get("blas"),
                     *driver_versions(m), rate(rates.get("cpu")),
                     rate(rates.get("gpu")), date(run.datetime),
                     os.path.basename(run.path)])
    return table(header, rows)


def model_order(runs):
    """Models in the book's order (``EXPERIMENTS``), unknown ones after it
    in order of appearance."""
    seen = []
    for run in runs:
        for model, *_ in run.results:
            if model not in seen:
                seen.append(model)
    known = list(EXPERIMENTS)
    return sorted(seen, key=lambda m: (known.index(m) if m in known
                                       else len(known) + seen.index(m)))


def row_keys(runs):
    """The (model, mini_batch_size) pairs measured in any run, in order."""
    sizes = {}
    for run in runs:
        for model, size, *_ in run.results:
            sizes.setdefault(model, set()).add(size)
    return [(model, size) for model in model_order(runs)
            for size in sorted(sizes[model])]


def gflop_per_epoch(runs, model, size):
    """The work of one epoch of ``model`` in GFLOP, as gpunn counted it
    (the first run that has it; it is the same network everywhere)."""
    for framework in ("gpunn", "torch"):
        for run in runs:
            for device in run.devices():
                info = run.results.get((model, size, framework, device))
                if info and info.get("flops_per_epoch"):
                    return info["flops_per_epoch"] / 1e9
    return None


def epoch_table(runs):
    """One row per (model, mini-batch size); for each machine and device
    four columns: gpunn s, torch s, gpunn/torch, gpunn's % of matmul
    peak; and where a run measured the contention variant, two more:
    gpunn's and torch's busy/quiet ratio."""
    groups = [(run, device) for run in runs for device in run.devices()]
    header = ["model", "mini-batch", "GFLOP/epoch"]
    for run, device in groups:
        name = f"{run.label} [{device}]"
        header += [f"{name} gpunn s", f"{name} torch s",
                   f"{name} gpunn/torch", f"{name} gpunn % peak"]
        if any(key[3] == device for key in run.busy):
            header += [f"{name} gpunn busy/quiet", f"{name} torch busy/quiet"]
    rows = []
    for model, size in row_keys(runs):
        row = [model, size, significant(gflop_per_epoch(runs, model, size))]
        for run, device in groups:
            ours = run.results.get((model, size, "gpunn", device)) or {}
            theirs = run.results.get((model, size, "torch", device)) or {}
            fraction = ours.get("fraction_of_matmul_peak")
            row += [significant(ours.get("epoch_seconds")),
                    significant(theirs.get("epoch_seconds")),
                    ratio(ours.get("epoch_seconds"), theirs.get("epoch_seconds")),
                    significant(100 * fraction) + "%" if fraction else DASH]
            if any(key[3] == device for key in run.busy):
                row += [busy_over_quiet(run, (model, size, framework, device))
                        for framework in ("gpunn", "torch")]
        rows.append(row)
    return table(header, rows, text_columns=1)


def busy_over_quiet(run, key):
    """The busy/quiet ratio of a case: its busy rounds over the quiet
    rounds between them, or else over the quiet case's time."""
    busy = run.busy.get(key) or {}
    quiet = busy.get("quiet_epoch_seconds") or \
        (run.results.get(key) or {}).get("epoch_seconds")
    return ratio(busy.get("epoch_seconds"), quiet)


def markdown(runs):
    """The whole report as one markdown string, ending in a newline."""
    parts = ["# gpunn benchmark report", "",
             "## Machines", "", machines_table(runs), "",
             "## Seconds per 50,000-image epoch", ""]
    if any(run.results for run in runs):
        parts += [
            "Median time of a measured round, scaled to a 50,000-image epoch, "
            "float32. gpunn/torch below 1 means gpunn is faster. "
            "\"% peak\" is gpunn's achieved GFLOP/s as a percentage of the "
            "machine's measured float32 matrix-multiply rate on that device. "
            "\"busy/quiet\" is the epoch next to one busy-looping process "
            "over the epoch on a quiet machine (rounds of the two "
            "alternating). "
            f"{DASH} means not measured.", "", epoch_table(runs)]
    else:
        parts.append("No epoch-time benchmarks (with gpunn's extra_info) "
                     "in these files.")
    return "\n".join(parts) + "\n"


def comparison(runs):
    """``gpunn bench compare``: seconds per epoch of each model, mini-batch
    size and backend (gpunn's and torch's rows side by side), one column
    per machine, and each machine's ratio to the first one given."""
    keys = []
    for run in runs:
        for key in run.results:
            if key not in keys:
                keys.append(key)
    models = model_order(runs)
    keys.sort(key=lambda k: (models.index(k[0]), k[1], k[3], k[2]))
    first = runs[0]
    header = ["model", "backend", "mini-batch"] + \
        ["{} (s/epoch)".format(run.label) for run in runs] + \
        ["{} / {}".format(run.label, first.label) for run in runs[1:]]
    rows = []
    for model, size, framework, device in keys:
        seconds = [(run.results.get((model, size, framework, device)) or {})
                   .get("epoch_seconds") for run in runs]
        backend = next(run.results[(model, size, framework, device)]["backend"]
                       for run in runs
                       if (model, size, framework, device) in run.results)
        rows.append([model, backend, size] + [significant(s) for s in seconds]
                    + [ratio(s, seconds[0]) for s in seconds[1:]])
    note = ("Seconds per 50,000-image training epoch, float32 (median round; "
            "lower is better). A ratio below 1: that machine is faster than "
            "{}. {} means not measured.".format(first.label, DASH))
    return "\n".join([note, "", table(header, rows, text_columns=2)]) + "\n"


# --- the chart --------------------------------------------------------------

def plot(runs, path):
    """Writes a PNG chart (1600 x 900 pixels) to ``path``: one subplot per
    mini-batch size, horizontal bars of seconds per epoch (log scale) for
    each model and each machine x backend.  Needs matplotlib (Agg)."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("--png needs matplotlib (pip install matplotlib); "
                          "the markdown report does not") from None
    matplotlib.use("Agg")  # no display needed, and none is assumed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    keys = row_keys(runs)
    if not keys:
        raise ReportError("nothing to plot: no epoch-time benchmarks in "
                          + ", ".join(run.path for run in runs))
    models = model_order(runs)
    sizes = sorted({size for _, size in keys})
    # One bar series per backend on a machine, in the table's column order.
    # tab20 comes in dark/light pairs of one hue: gpunn dark, torch light,
    # one hue per machine and device, so the bars to compare look related.
    series = []
    for group, (run, device) in enumerate(
            (run, device) for run in runs for device in run.devices()):
        for shade, framework in enumerate(("gpunn", "torch")):
            backend = next((info["backend"] for key, info in run.results.items()
                            if key[2:] == (framework, device)), None)
            if backend:
                series.append((run, framework, device, backend,
                               plt.get_cmap("tab20")((2 * group + shade) % 20)))
    height = 0.8 / len(series)

    def tick_label(x, _):
        """1, 2, 5, 10, 20, 50...: log ticks readable as seconds."""
        leading = round(x / 10 ** math.floor(math.log10(x)))
        return f"{x:g}" if leading in (1, 2, 5) else ""

    fig, axes = plt.subplots(1, len(sizes), figsize=(16, 9), dpi=100,
                             sharey=True, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, (run, framework, device, _, color) in enumerate(series):
            offset = (i - (len(series) - 1) / 2) * height
            for j, model in enumerate(models):
                info = run.results.get((model, size, framework, device))
                if info:  # a model's bars sit side by side around y = j
                    ax.barh(j + offset, info["epoch_seconds"], height=height,
                            color=color)
                    ax.text(info["epoch_seconds"], j + offset,
                            " " + significant(info["epoch_seconds"]),
                            va="center", fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(tick_label))
        ax.xaxis.set_minor_formatter(FuncFormatter(tick_label))
        ax.margins(x=0.12)  # room for the value labels after the bars
        ax.set_title(f"mini-batch size {size}")
        ax.set_xlabel("seconds per 50,000-image epoch (log scale)")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0][0].set_yticks(range(len(models)), models)
    axes[0][0].invert_yaxis()  # the book's first model on top
    fig.legend([Patch(color=s[4]) for s in series],
               [f"{run.label} [{device}]: {backend}"
                for run, _, device, backend, _ in series],
               loc="lower center", ncol=min(len(series), 4), frameon=False)
    fig.suptitle("gpunn and torch: seconds per training epoch "
                 "(float32, lower is better)", fontsize=15)
    legend_rows = math.ceil(len(series) / 4)
    fig.tight_layout(rect=(0, 0.02 + 0.035 * legend_rows, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)


# --- command line -------------------------------------------------------------

def main(argv=None):
    """The command line; returns the exit status (2 for a bad file)."""
    parser = argparse.ArgumentParser(
        prog="python -m gpunn.bench.report",
        description="Markdown report (and optional PNG chart) of the gpunn "
                    "benchmark suite's pytest-benchmark JSON results, one "
                    "file per machine.")
    parser.add_argument("results", nargs="+", metavar="RESULT.json",
                        help="a file from --benchmark-json or from "
                             "--benchmark-autosave's storage")
    parser.add_argument("--markdown", metavar="OUT.md",
                        help="also write the markdown report to this file")
    parser.add_argument("--png", metavar="OUT.png",
                        help="write a bar chart of seconds per epoch "
                             "(needs matplotlib)")
    args = parser.parse_args(argv)
    try:
        runs = load_results(args.results)
        text = markdown(runs)
        print(text, end="")
        if args.markdown:
            try:
                with open(args.markdown, "w", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                raise ReportError(f"{args.markdown}: cannot write: "
                                  f"{e.strerror or e}") from None
        if args.png:
            plot(runs, args.png)
    except ReportError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
