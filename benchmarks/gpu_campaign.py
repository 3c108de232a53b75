"""gpu_campaign.py
~~~~~~~~~~~~~~~~~~

The GPU campaign (issue 11) as one prepared command per stage, for the
device tool's machines: a command runs at most 10 minutes, and what it
leaves in ``$OUT`` comes back only as a few files (at most 8, 16 MiB
each).  Every stage ends inside ``STAGE_SECONDS`` and writes compact
results (JSON, a log) into the folder it is given.

Here, on any machine (no GPU needed):

    python3 benchmarks/gpu_campaign.py plan          the stages in order: commands, estimates
    python3 benchmarks/gpu_campaign.py wheels .whl   the wheels of Dask that the GPU image lacks

On the GPU machine, from the repository root (``plan`` prints each
command whole, with the wheels' install in front):

    check OUT                 nvidia-smi, versions, pytest -m gpu, the kernels' compile time
    bench OUT --part K        the suite's GPU cases of part K of the models (PARTS)
    cpu-scaling OUT           gpunn-numpy and torch-cpu at 1, 2, 4, 8 and 16 threads
    reproduce OUT [--state DIR]
                              gpunn reproduce of chapter 6's rows in REPRODUCE_ROWS'
                              order, stopped (Ctrl-C: checkpoints kept) before the
                              command's limit; OUT gets the results folder, packed
                              (state.tar.gz.NN), for --state of the next call

``--rehearse`` runs a stage on the CPU, on NumPy with a few images:
the test suite rehearses every stage so that a GPU's minutes go to
measuring.
"""

import argparse
import glob
import io
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script: the checkout's gpunn
    sys.path.insert(0, REPO)
#: What one stage may take: the device runs a command 10 minutes at most.
STAGE_SECONDS = 540
#: Models of the benchmark suite, a part per command.
PARTS = (("shallow", "basic_conv", "omit_FC"),
         ("dbl_conv", "dbl_conv_relu", "double_fc_dropout"),
         ("expanded_data_100", "expanded_data_300", "expanded_data_1000"),
         ("expanded_data_double_fc_100", "expanded_data_double_fc_300",
          "expanded_data_double_fc_1000"))
GPU_BACKENDS = ("gpunn-cupy", "gpunn-cupy-graph", "torch-cuda")
CPU_BACKENDS = ("gpunn-numpy", "torch-cpu")
CPU_THREADS = (1, 2, 4, 8, 16)
CPU_SCALING_MODEL = "dbl_conv_relu"
#: Chapter 6's rows, in the order the issue asks for them.
REPRODUCE_ROWS = ("dbl_conv_relu", "double_fc_dropout", "vote",
                  "expanded_data_300", "expanded_data_1000",
                  "expanded_data_double_fc_300",
                  "expanded_data_double_fc_1000", "shallow", "basic_conv",
                  "dbl_conv", "expanded_data_100",
                  "expanded_data_double_fc_100")
#: The wheels that gpunn reproduce needs and the GPU image lacks: Dask
#: distributed and what it needs beyond the image's packages (click,
#: cloudpickle, fsspec, jinja2, msgpack, psutil, pyyaml, ... are there).
WHEELS = ("dask", "distributed", "tornado", "tblib", "zict", "partd",
          "locket")
#: Of the GPU image's packages (/work/.library/device/KINDS.md, read
#: 2026-11-17), those that Dask distributed needs.
IMAGE_PACKAGES = ("click", "cloudpickle", "fsspec", "jinja2", "msgpack",
                  "packaging", "psutil", "pyyaml", "sortedcontainers",
                  "toolz", "urllib3", "markupsafe")
WHEEL_FOLDER = ".whl"
STATE_FOLDER = os.path.join(".campaign", "state")
CHUNK_BYTES = 15 * 2**20  # a file back from $OUT: 16 MiB at most
REHEARSAL = ["--limit", "300", "--eval-limit", "100"]


def _install_wheels():
    """The shell prefix that installs the carried wheels on the GPU
    machine (nothing installs there from a registry)."""
    return ("python3 -m pip install -q --no-index --no-deps --no-compile "
            "--no-cache-dir --upgrade --target /tmp/site {}/*.whl && "
            "export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 || exit; "
            .format(WHEEL_FOLDER))


# ---------------------------------------------------------------- the plan

def plan():
    """The stages in order: (name, device command, carry, estimated
    seconds).  The estimates are rough (``gpunn bench``'s: GPU steps at
    1 ms, CPU cases at a quarter of a 16-core machine's matmul rate; or
    the time limit where a stage stops itself)."""
    stages = [("check", "python3 benchmarks/gpu_campaign.py check $OUT",
               [WHEEL_FOLDER], check_seconds())]
    for k in range(len(PARTS)):
        stages.append(("bench part {}".format(k),
                       "python3 benchmarks/gpu_campaign.py bench $OUT "
                       "--part {}".format(k), [WHEEL_FOLDER],
                       bench_seconds(PARTS[k], GPU_BACKENDS)))
    stages.append(("cpu-scaling", "python3 benchmarks/gpu_campaign.py "
                   "cpu-scaling $OUT", [WHEEL_FOLDER], cpu_scaling_seconds()))
    for k in range(3):
        stages.append(("reproduce {}".format(k),
                       "python3 benchmarks/gpu_campaign.py reproduce $OUT "
                       "--state {}".format(STATE_FOLDER),
                       [WHEEL_FOLDER, ".campaign"], STAGE_SECONDS + 30))
    return [(name, _install_wheels() + command, carry, seconds)
            for name, command, carry, seconds in stages]


def check_seconds():
    return 20 + 360 + 2 * 60  # versions, pytest -m gpu (capped), two trainings


def bench_seconds(models, backends, rate=500e9):
    """``gpunn bench``'s estimate of the suite's cases, at 10, 64 and 256,
    with CPU cases at a matmul ``rate`` (default: a 16-core machine's
    sgemm, FLOP/s)."""
    from gpunn import bench
    return bench.estimate_seconds(bench.cases(models, (10, 64, 256),
                                              backends), None, rate)


def cpu_scaling_seconds():
    return sum(bench_seconds([CPU_SCALING_MODEL], CPU_BACKENDS,
                             rate=threads * 500e9 / 16)
               for threads in CPU_THREADS)


def print_plan(say=print):
    total = 0.0
    say("The GPU campaign, a device command per stage (in this order). "
        "Before the first, here: python3 benchmarks/gpu_campaign.py wheels "
        "(into {}, which .gitignore keeps out of git, as .campaign/: both "
        "travel only as carry).".format(WHEEL_FOLDER))
    for name, command, carry, seconds in plan():
        total += seconds
        say("\n## {} (about {:.1f} min{})\ncarry: {}\n{}".format(
            name, seconds / 60, "; OVER the stage's time" if seconds >
            STAGE_SECONDS + 60 else "", json.dumps(carry), command))
    say("\nAfter each reproduce stage: copy its state.tar.gz.* from the "
        "reply's files_at into {} (replacing what was there), so that the "
        "next one goes on.\nAbout {:.0f} device minutes in all, and a "
        "minute or two to start the machine: a session has 30, so go in "
        "this order until they are spent, and say in the note where it "
        "stopped.".format(STATE_FOLDER, total / 60))


# ---------------------------------------------------------------- wheels (here)

def wheels(folder):
    """Download WHEELS for the GPU image's Python (3.12) into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    platforms = []
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                "manylinux2014_x86_64", "manylinux1_x86_64"):
        platforms += ["--platform", tag]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12",
                    "--implementation", "cp", *platforms, "-d", folder,
                    *WHEELS], check=True)


# ---------------------------------------------------------------- stages

class Stage:
    """A stage's folder and log (OUT/STAGE.log), its results
    (OUT/STAGE.json) and the commands it runs, each stopped at the
    stage's deadline."""

    def __init__(self, name, out, rehearse):
        os.makedirs(out, exist_ok=True)
        self.name, self.out, self.rehearse = name, out, rehearse
        self.deadline = time.monotonic() + STAGE_SECONDS
        self.log = open(os.path.join(out, name + ".log"), "a")
        self.results = {"stage": name, "rehearsal": rehearse,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "commands": []}

    def say(self, line):
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, command, seconds=None, env=None, interrupt=False):
        """Run ``command`` (its output into the log) for at most
        ``seconds`` (and never past the deadline): then SIGINT
        (``interrupt``, for gpunn's clean stop) or SIGKILL.  Returns its
        record: command, exit code, seconds, stopped."""
        left = self.deadline - time.monotonic()
        seconds = min(seconds or left, left)
        self.say("$ {}".format(shlex.join(command)))
        start = time.monotonic()
        child = subprocess.Popen(command, cwd=REPO, stdout=self.log,
                                 stderr=subprocess.STDOUT,
                                 env=dict(os.environ, **(env or {})),
                                 start_new_session=True)
        stopped = False
        try:
            child.wait(timeout=max(seconds, 1))
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(child.pid, signal.SIGINT if interrupt
                      else signal.SIGKILL)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        record = {"command": command, "exit_code": child.returncode,
                  "seconds": round(time.monotonic() - start, 1),
                  "stopped_at_limit": stopped}
        self.results["commands"].append(record)
        self.say("exit code {} after {} s{}".format(
            child.returncode, record["seconds"],
            " (stopped at its time limit)" if stopped else ""))
        return record

    def finish(self):
        self.results["seconds"] = round(
            STAGE_SECONDS - (self.deadline - time.monotonic()), 1)
        with open(os.path.join(self.out, self.name + ".json"), "w") as f:
            json.dump(self.results, f, indent=1)
        self.log.close()
        return 0


def check(out, rehearse=False):
    """nvidia-smi, versions, ``pytest -m gpu``, and the first epoch's
    compile time: dbl_conv_relu trained one short epoch with an empty
    CuPy kernel cache, then again with it full."""
    stage = Stage("check", out, rehearse)
    stage.results["versions"] = versions()
    stage.say(json.dumps(stage.results["versions"]))
    if not rehearse:
        stage.run(["nvidia-smi"], seconds=30)
    tests = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfE",
             "-p", "no:cacheprovider", "--junitxml",
             os.path.join(os.path.abspath(out), "gpu-tests.xml")]
    if rehearse:
        tests += ["--collect-only"]
    stage.results["gpu_tests"] = stage.run(tests, seconds=360)
    stage.results["gpu_tests"]["summary"] = _junit_summary(
        os.path.join(out, "gpu-tests.xml"))
    scratch = tempfile.mkdtemp(prefix="gpunn-campaign-check-")
    cache = os.path.join(scratch, "cupy-cache")
    train = [sys.executable, "-m", "gpunn", "train", "dbl_conv_relu",
             "--epochs", "1", "--quiet", "--seed", "1",
             "--backend", "numpy" if rehearse else "cupy"] + (
                 REHEARSAL if rehearse else ["--limit", "5000",
                                             "--eval-limit", "1000"])
    timings = {}
    for when in ("cold", "warm"):
        record = stage.run(train + ["--out", os.path.join(scratch, when)],
                           seconds=60, env={"CUPY_CACHE_DIR": cache})
        timings[when] = record["seconds"]
    shutil.rmtree(scratch)
    stage.results["first_epoch_seconds"] = timings
    stage.results["compile_seconds"] = round(timings["cold"] -
                                             timings["warm"], 1)
    return stage.finish()


def versions():
    found = {"python": platform.python_version(),
             "machine": platform.machine()}
    for name in ("numpy", "cupy", "torch", "numba", "distributed"):
        try:
            found[name] = __import__(name).__version__
        except Exception as e:  # absent, or no driver
            found[name] = "not usable: {}".format(str(e).splitlines()[0]
                                                  if str(e) else type(e))
    try:
        import cupy
        found["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        found["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        found["gpu"] = name.decode() if isinstance(name, bytes) else name
    except Exception as e:
        found["gpu"] = "none: {}".format(str(e).splitlines()[0] if str(e)
                                         else type(e).__name__)
    return found


def _junit_summary(path):
    import xml.etree.ElementTree as ElementTree
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    summary = {k: int(suite.get(k, 0)) for k in ("tests", "failures",
                                                  "errors", "skipped")}
    summary["failed"] = [case.get("classname", "") + "::" + case.get("name")
                         for case in suite.iter("testcase")
                         if case.find("failure") is not None or
                         case.find("error") is not None]
    return summary


def bench(out, part, rehearse=False):
    """The suite's cases of the models of PARTS[part] on the GPU
    backends, into OUT/<gpu>-part<K>.json."""
    stage = Stage("bench-part{}".format(part), out, rehearse)
    models, backends = PARTS[part], GPU_BACKENDS
    sizes, extra = ("10", "64", "256"), []
    if rehearse:
        models, backends, sizes = models[:1], ("gpunn-numpy",), ("10",)
        extra = ["--steps", "1"]
    name = "rehearsal" if rehearse else _slug(versions().get("gpu", "gpu"))
    result = os.path.join(os.path.abspath(out),
                          "{}-part{}.json".format(name, part))
    nodes = ["benchmarks/test_epoch_time.py::test_epoch_time[{}-{}-{}]"
             .format(m, s, b) for m in models for s in sizes for b in backends]
    stage.results["cases"] = len(nodes)
    stage.results["file"] = os.path.basename(result)
    stage.run([sys.executable, "-m", "pytest", *nodes, "-q", "-p",
               "no:cacheprovider", "-o", "addopts=", "--benchmark-enable",
               "--benchmark-json", result, *extra])
    return stage.finish()


def cpu_scaling(out, rehearse=False):
    """gpunn-numpy and torch-cpu for CPU_SCALING_MODEL at 10, 64, 256 on
    1, 2, 4, 8 and 16 threads: OUT/cpu-threadsN.json each."""
    stage = Stage("cpu-scaling", out, rehearse)
    threads, sizes, extra = CPU_THREADS, ("10", "64", "256"), []
    if rehearse:
        threads, sizes, extra = (1, 2), ("10",), ["--steps", "1"]
    for n in threads:
        nodes = ["benchmarks/test_epoch_time.py::test_epoch_time[{}-{}-{}]"
                 .format(CPU_SCALING_MODEL, s, b) for s in sizes
                 for b in CPU_BACKENDS]
        result = os.path.join(os.path.abspath(out),
                              "cpu-threads{}.json".format(n))
        record = stage.run([sys.executable, "-m", "pytest", *nodes, "-q",
                            "-p", "no:cacheprovider", "-o", "addopts=",
                            "--benchmark-enable", "--benchmark-json", result,
                            "--threads", str(n), *extra])
        if record["stopped_at_limit"]:
            break
    return stage.finish()


def reproduce(out, state=None, rehearse=False, seconds=None):
    """``gpunn reproduce`` of REPRODUCE_ROWS on CuPy, going on from the
    packed results folder in ``state`` (state.tar.gz.NN files), stopped
    with Ctrl-C (its runs keep their checkpoints) ``seconds`` before the
    stage's end; then the results folder is packed into OUT."""
    stage = Stage("reproduce", out, rehearse)
    folder = tempfile.mkdtemp(prefix="gpunn-campaign-reproduce-")
    chunks = sorted(glob.glob(os.path.join(state, "state.tar.gz.*"))) \
        if state else []
    if chunks:
        _unpack(chunks, folder)
        stage.say("went on from {} ({} files)".format(state, len(chunks)))
    rows = list(REPRODUCE_ROWS)
    command = [sys.executable, "-m", "gpunn", "reproduce", *rows, "--out",
               os.path.join(folder, "reproduce"), "--backend",
               "numpy" if rehearse else "cupy"]
    if rehearse:
        command[4:4 + len(rows)] = ["shallow", "basic_conv"]
        command += ["--runs", "1", "--epochs", "20", "--limit", "2000",
                    "--eval-limit", "100"]
    record = stage.run(command, seconds=seconds or STAGE_SECONDS - 90,
                       interrupt=True)
    table = os.path.join(folder, "reproduce", "results.json")
    if os.path.exists(table):
        with open(table) as f:
            stage.results["table"] = json.load(f)
    stage.results["finished"] = record["exit_code"] == 0
    packed = _pack(folder, out)
    shutil.rmtree(folder)
    if len(packed) > 6:  # with the log and the JSON: 8 files come back
        stage.say("WARNING: {} state files: more than 6 do not all come "
                  "back from $OUT".format(len(packed)))
    stage.say("packed the results folder into {} file(s) of {}".format(
        len(packed), out))
    return stage.finish()


def _pack(folder, out):
    """``folder`` as OUT/state.tar.gz.00, .01, ... (CHUNK_BYTES each)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=".")
    data = buffer.getvalue()
    for old in glob.glob(os.path.join(out, "state.tar.gz.*")):
        os.remove(old)
    paths = []
    for k in range(0, max(len(data), 1), CHUNK_BYTES):
        paths.append(os.path.join(out, "state.tar.gz.{:02d}".format(
            k // CHUNK_BYTES)))
        with open(paths[-1], "wb") as f:
            f.write(data[k:k + CHUNK_BYTES])
    return paths


def _unpack(chunks, folder):
    data = b"".join(open(path, "rb").read() for path in chunks)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def _slug(text):
    import re
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="stage", required=True)
    commands.add_parser("plan")
    c = commands.add_parser("wheels")
    c.add_argument("folder", nargs="?", default=WHEEL_FOLDER)
    for name in ("check", "bench", "cpu-scaling", "reproduce"):
        c = commands.add_parser(name)
        c.add_argument("out")
        c.add_argument("--rehearse", action="store_true",
                       help="on the CPU, with NumPy and a few images")
        if name == "bench":
            c.add_argument("--part", type=int, required=True,
                           choices=range(len(PARTS)))
        if name == "reproduce":
            c.add_argument("--state", help="a folder of state.tar.gz.NN "
                           "files from the last reproduce stage")
            c.add_argument("--seconds", type=float,
                           help="stop gpunn reproduce after this long "
                           "(default: {} s)".format(STAGE_SECONDS - 90))
    args = p.parse_args(argv)
    if args.stage == "plan":
        return print_plan() or 0
    if args.stage == "wheels":
        return wheels(args.folder) or 0
    if args.stage == "check":
        return check(args.out, args.rehearse)
    if args.stage == "bench":
        return bench(args.out, args.part, args.rehearse)
    if args.stage == "cpu-scaling":
        return cpu_scaling(args.out, args.rehearse)
    return reproduce(args.out, args.state, args.rehearse, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
