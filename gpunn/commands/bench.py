"""bench.py
~~~~~~~~~~~

``gpunn bench``: seconds per training epoch, to compare hardware
(gpunn.bench runs the suite), here or (--scheduler) on a Dask worker of
one machine or (--each-worker) of every machine, a result file each
(gpunn.cluster.bench_on sends it there); ``gpunn bench compare FILE...``
puts the files of several machines side by side.
"""

import contextlib
import json
import os
import queue
import sys

import gpunn
from gpunn.bench import BACKENDS, QUICK_STEPS
from gpunn.commands.common import positive_int


def add_parser(subparsers):
    c = subparsers.add_parser(
        "bench", help="compare hardware: seconds per training epoch",
        description="Run the benchmark suite (a checkout's benchmarks/) and "
        "write one JSON file; 'gpunn bench compare FILE...' puts the files "
        "of several machines side by side.")
    c.add_argument("--models", nargs="+", metavar="MODEL",
                   default=["dbl_conv_relu"],
                   help="chapter-6 models (default dbl_conv_relu; 'all' for "
                   "every one)")
    c.add_argument("--batch", nargs="+", type=positive_int, metavar="M",
                   default=[10, 64, 256], help="mini-batch sizes "
                   "(default 10 64 256)")
    c.add_argument("--backend", nargs="+", metavar="B", dest="backends",
                   help="of " + ", ".join(BACKENDS) + " (default: "
                   "all; those this machine cannot run are skipped)")
    c.add_argument("--quick", action="store_true",
                   help="{} steps per timed round: a rough figure, fast"
                   .format(QUICK_STEPS))
    c.add_argument("--name", help="the machine's name in the results "
                   "(default: its GPU's name, or its CPU's model and cores)")
    c.add_argument("--out", help="the JSON file (default bench-NAME.json); "
                   "with --each-worker, the folder of the files (default .)")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a worker of this Dask scheduler "
                   "(e.g. tcp://host:8786)")
    c.add_argument("--each-worker", action="store_true",
                   help="with --scheduler: run on one worker of every "
                   "machine, a result file each")
    c.set_defaults(command=run)
    sub = c.add_subparsers(metavar="compare", dest="bench_command")
    compare = sub.add_parser(
        "compare", help="seconds per epoch of several machines side by side",
        description="Seconds per epoch for each model, mini-batch size and "
        "backend, a column per machine, and each machine's ratio to the "
        "first file given.")
    compare.add_argument("files", nargs="+", metavar="FILE")
    compare.add_argument("--markdown", metavar="PATH",
                         help="also write the table to this file")
    compare.add_argument("--png", metavar="PATH",
                         help="also draw a bar chart (needs matplotlib)")
    compare.set_defaults(command=run_compare)


def run(args):
    from gpunn import bench, experiments
    models = list(experiments.EXPERIMENTS) if args.models == ["all"] \
        else args.models
    backends = args.backends or bench.BACKENDS
    bench.cases(models, args.batch, backends)  # refuse a wrong name here
    if args.scheduler or args.each_worker:
        return _on_workers(args, models, backends)
    name = args.name
    out = args.out or bench.file_name(name or bench.machine_name())
    failed = bench.run(models, args.batch, backends, args.quick, name, out)
    print("Wrote {}{}".format(out, "; {} case(s) FAILED".format(failed)
                              if failed else ""))
    return 1 if failed else 0


def run_compare(args):
    from gpunn import bench
    bench.compare(args.files, args.markdown, args.png)
    return 0


def _on_workers(args, models, backends):
    """gpunn bench --scheduler: on one worker, or (--each-worker) on one
    worker of each machine, all at once; a result file per machine, in
    the folder --out (with --each-worker) or the file --out."""
    from gpunn import cluster
    if not args.scheduler:
        raise gpunn.ConfigError("--each-worker runs the benchmark on the "
                                "machines of a cluster: give its --scheduler")
    if args.each_worker and args.name:
        raise gpunn.ConfigError("--name names one machine; with "
                                "--each-worker each is named by its hardware")
    with cluster.connect(args.scheduler) as client:
        machines = cluster.workers_by_machine(client, each=args.each_worker)
        print("gpunn bench: on {} machine{} of {}: {}".format(
            len(machines), "" if len(machines) == 1 else "s", args.scheduler,
            ", ".join(machines)), flush=True)
        results, failed = [], 0
        ends = cluster.bench_on(client, machines, models, args.batch,
                                backends, args.quick, args.name, _show)
        with contextlib.closing(ends):
            for host, result in ends:
                if isinstance(result, Exception):
                    failed += 1
                    print("{}: FAILED: {}".format(host, result),
                          file=sys.stderr)
                else:
                    results.append(result)
    return _write_results(args, results, failed)


def _show(events, wait):
    """The workers' progress lines, as they come."""
    try:
        while True:
            print(events.get(timeout=wait)[1], flush=True)
            wait = 0.01
    except queue.Empty:
        pass


def _write_results(args, results, failed):
    """Write each machine's result file (machines of one kind named by
    their host too); the exit status: 1 where a case or a machine
    failed (``failed`` of them did), else 0."""
    from gpunn import bench
    folder = (args.out or ".") if args.each_worker else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    names = [r["name"] for r in results]
    for r in results:
        name = r["name"]
        if names.count(name) > 1:  # machines of one kind: named by host too
            name = "{} ({})".format(name, r["host"])
            data = json.loads(r["results"])
            data["machine_info"]["gpunn"]["name"] = name
            r["results"] = json.dumps(data, indent=4)
        path = os.path.join(folder, bench.file_name(name)) if folder else \
            args.out or bench.file_name(name)
        with open(path, "w") as f:
            f.write(r["results"])
        failed += r["failed"]
        print("Wrote {} ({}){}".format(path, name, "; {} case(s) FAILED"
                                       .format(r["failed"]) if r["failed"]
                                       else ""))
    return 1 if failed else 0
