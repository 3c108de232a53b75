"""sweep.py
~~~~~~~~~~~

``gpunn sweep NAME --lmbda L ... --runs 3``: the book's conv.py sweeps
of the L2 regularization parameter lmbda, each value trained ``runs``
times (seeds 1, 2, 3, ...), with everything else the experiment's.

conv.py swept two networks: ``regularized_dbl_conv`` (sigmoid, lmbda
0.00001 to 100) and ``dbl_conv_relu`` (ReLU, lmbda 0 to 100), three runs
of 60 epochs each.  ``BOOK_LMBDAS`` has their values, the default of
``--lmbda`` for those two.

The runs go through Dask as those of ``gpunn reproduce`` (gpunn.cluster):
a row per lmbda, a run per seed, each run's compact log in OUT/logs.
From the logs alone (``table``), OUT/sweep.md, OUT/sweep.json and
OUT/sweep.png: for each lmbda, each run's best validation accuracy and
its test accuracy (network3's: the test accuracy of the last epoch of
best validation accuracy), and the best run's, drawn against lmbda on a
log scale.

In float32 the smallest values change nothing: the step's L2 factor
1 - eta*lmbda/num_training_batches (network3's update) rounds to 1 below
about 3e-8, so at eta 0.03 with 5,000 mini-batches an epoch, lmbda up to
0.001 trains as lmbda 0 does (float64 tells them apart).
"""

import json
import os

from gpunn import experiments, reproduce
from gpunn.errors import ConfigError

_DECADES = (0.00001, 0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
#: conv.py's values of lmbda for the sweeps it ran.
BOOK_LMBDAS = {"regularized_dbl_conv": _DECADES,
               "dbl_conv_relu": (0.0,) + _DECADES}


def rows(name, lmbdas):
    """The rows of the sweep of experiment ``name``: one per value of
    ``lmbdas`` (default: the book's), in that order."""
    if name not in experiments.CONV_PY:
        raise ConfigError("no model {!r} to sweep: choose one of {}".format(
            name, ", ".join(experiments.CONV_PY)))
    if not lmbdas:
        if name not in BOOK_LMBDAS:
            raise ConfigError(
                "the book swept lmbda for {} only: give {} its values with "
                "--lmbda".format(" and ".join(BOOK_LMBDAS), name))
        lmbdas = BOOK_LMBDAS[name]
    if len(set(lmbdas)) != len(lmbdas):
        raise ConfigError("--lmbda: a value is given twice")
    e = experiments.experiment(name)
    return [reproduce.Row(key(name, lmbda), "chapter6",
                          "{}, lmbda {:g}".format(name, lmbda), None,
                          "test_at_best_validation",
                          (name, "--lmbda", repr(float(lmbda))), e.epochs,
                          e.expanded_data)
            for lmbda in lmbdas]


def key(name, lmbda):
    return "{}-lmbda{:g}".format(name, lmbda)


def best_epoch(records):
    """network3's choice: the last epoch of best validation accuracy (the
    epoch whose test accuracy it measured last)."""
    tested = [r for r in records if r.get("test_accuracy") is not None]
    return tested[-1] if tested else max(
        reversed(records), key=lambda r: r["validation_accuracy"])


def table(logs_folder):
    """The sweep from the compact logs of ``logs_folder``: one dict per
    lmbda, in increasing order: ``lmbda``, ``runs`` (each run's
    ``run``, ``epoch``, ``validation`` and ``test``, in %, at its best
    epoch), ``validation`` and ``test`` (the best run's), ``epochs``,
    ``name`` and ``limited`` (trained on a part of the images)."""
    sweep = {}
    for file_name in sorted(os.listdir(logs_folder)):
        if not file_name.endswith(".jsonl"):
            continue
        header, *records = reproduce.read_jsonl(
            os.path.join(logs_folder, file_name))
        settings = header["settings"]
        best = best_epoch(records)
        entry = sweep.setdefault(settings["lmbda"], {
            "lmbda": settings["lmbda"], "name": settings["experiment"],
            "epochs": len(records), "runs": [],
            "limited": bool(settings.get("limit") or
                            settings.get("eval_limit"))})
        entry["runs"].append({
            "run": header["run"], "epoch": best["epoch"],
            "validation": round(100 * best["validation_accuracy"], 2),
            "test": None if best.get("test_accuracy") is None else
            round(100 * best["test_accuracy"], 2)})
    names = sorted({entry["name"] for entry in sweep.values()})
    if len(names) > 1:
        raise ConfigError("{} holds sweeps of {}: one sweep a folder".format(
            logs_folder, " and ".join(names)))
    result = []
    for lmbda in sorted(sweep):
        entry = sweep[lmbda]
        entry["runs"].sort(key=lambda r: r["run"])
        best = max(entry["runs"], key=lambda r: r["validation"])
        entry.update(validation=best["validation"], test=best["test"])
        result.append(entry)
    return result


def markdown(sweep):
    lines = ["| lmbda | best validation accuracy | its test accuracy | "
             "runs: validation / test (epoch) | epochs |",
             "| ---: | ---: | ---: | --- | ---: |"]
    for entry in sweep:
        runs = ", ".join("{:.2f} / {} ({})".format(
            r["validation"], "-" if r["test"] is None else
            "{:.2f}".format(r["test"]), r["epoch"]) for r in entry["runs"])
        lines.append("| {:g} | {:.2f}% | {} | {} | {} |".format(
            entry["lmbda"], entry["validation"], "-" if entry["test"] is None
            else "{:.2f}%".format(entry["test"]), runs, entry["epochs"]))
    if any(entry["limited"] for entry in sweep):
        lines += ["", "Trained or evaluated on part of the images "
                  "(--limit, --eval-limit): NOT the book's settings."]
    return "\n".join(lines) + "\n"


def report(out):
    """Write out/sweep.md, out/sweep.json and out/sweep.png from
    out/logs; returns the sweep.  The plot needs matplotlib; without it,
    the table is written and a MatplotlibMissing raised."""
    from gpunn import plots
    sweep = table(os.path.join(out, "logs"))
    if not sweep:
        raise ConfigError("{} has no logs of a sweep".format(
            os.path.join(out, "logs")))
    with open(os.path.join(out, "sweep.md"), "w") as f:
        f.write(markdown(sweep))
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump(sweep, f, indent=1)
    plots.plot_sweep(sweep, os.path.join(out, "sweep.png"))
    return sweep
