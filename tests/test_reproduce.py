"""gpunn reproduce: real subprocesses on small slices of MNIST, checked
against networks trained here and against the book's formulas for each
row's number; and the committed docs/RESULTS.md against its logs."""

import json
import os
import re
import subprocess
import sys

import pytest

from gpunn import backend, reproduce
from tests.helpers import skip_without_cupy
from tests.test_cli import REPO, gpunn, ok

SMALL = ["--epochs", "2", "--limit", "1000", "--eval-limit", "300",
         "--backend", "numpy"]


def lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def load(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.system
def test_chapter1_runs_side_by_side_and_match_a_network_trained_here(tmp_path):
    import gpunn as g
    from gpunn import mnist_loader, network
    out = ok(gpunn("reproduce", "ch1-30", "--runs", "2", "--jobs", "2",
                   "--out", tmp_path, *SMALL))
    assert "2 side by side" in out
    assert "(NOT the book's settings)" in out  # 2 epochs, not 30
    log = lines(tmp_path / "logs" / "ch1-30-run1.jsonl")
    header, epochs = log[0], log[1:]
    assert header["settings"]["seed"] == 2 and header["dtype"] == "float64"
    assert header["settings"]["eta"] == 3.0 and [e["epoch"] for e in epochs] == [0, 1]
    # The same network, trained in this process: the same test accuracies.
    g.use("numpy", "float64", seed=2)
    training, validation, test = mnist_loader.load_data_wrapper()
    net = network.Network([784, 30, 10])
    here = []
    for _ in net._train(training[:1000], 2, 10, 3.0, 0.0):
        here.append(net.accuracy(test[:300]) / 300)
    assert [e["test_accuracy"] for e in epochs] == here
    # The row's number: the peak test accuracy of the better run, in %.
    table = load(tmp_path / "results.json")
    runs = [max(e["test_accuracy"] for e in lines(
        tmp_path / "logs" / "ch1-30-run{}.jsonl".format(j))[1:]) for j in (0, 1)]
    assert table[0]["runs"] == [round(100 * r, 2) for r in runs]
    assert table[0]["gpunn"] == round(100 * max(runs), 2)
    assert table[0]["difference"] == round(100 * max(runs) - 95.42, 2)
    assert table[0]["book"] == 95.42 and not table[0]["book_settings"]
    invocation, = lines(tmp_path / "invocations.jsonl")
    assert invocation["runs"] == 2 and invocation["failed"] == 0
    # Wall time per run: each process's, start-up included, not only its
    # epochs' (a short run read "0 s").
    walls = [lines(tmp_path / "logs" / "ch1-30-run{}.jsonl".format(j))[0][
        "wall_seconds"] for j in (0, 1)]
    epoch_seconds = sum(e["seconds"] for e in epochs)
    assert walls[1] > epoch_seconds and all(w > 0.5 for w in walls)
    assert table[0]["wall_seconds"] == round(sum(walls) / 2, 1)
    row, = [line for line in (tmp_path / "table.md").read_text().split("\n")
            if line.startswith("| ch1-30 ")]
    # (as the table words it: "8.4 s" below 10 s, "11 s" above, when the
    # machine is busy)
    assert "| {} |".format(reproduce.duration(table[0]["wall_seconds"])) \
        in row, row

    # Run again: finished runs are kept, not trained again.
    before = (tmp_path / "logs" / "ch1-30-run0.jsonl").read_text()
    out = ok(gpunn("reproduce", "ch1-30", "--runs", "2", "--out", tmp_path, *SMALL))
    assert out.count("done already") == 2 and "started" not in out
    assert (tmp_path / "logs" / "ch1-30-run0.jsonl").read_text() == before
    # --report makes the same table from the logs alone.
    table_md = (tmp_path / "table.md").read_text()
    assert ok(gpunn("reproduce", "--report", "--out", tmp_path)) == table_md


@pytest.mark.system
def test_a_run_cut_short_is_trained_again_or_resumed(tmp_path):
    # Chapter 3 keeps no checkpoint: a run without its network is redone.
    ok(gpunn("reproduce", "ch3-30", "--runs", "1", "--out", tmp_path, *SMALL))
    run = tmp_path / "runs" / "ch3-30" / "run-0"
    os.remove(run / "network.json")
    out = ok(gpunn("reproduce", "ch3-30", "--runs", "1", "--out", tmp_path, *SMALL))
    assert "ch3-30 run 0: started" in out
    assert len(lines(run / "log.jsonl")) == 2
    # Chapter 6 goes on from its checkpoint: 1 epoch, then 2.
    small = SMALL[2:]
    ok(gpunn("reproduce", "shallow", "--runs", "1", "--epochs", "1",
             "--out", tmp_path, *small))
    run = tmp_path / "runs" / "shallow" / "run-0"
    first = lines(run / "log.jsonl")
    ok(gpunn("reproduce", "shallow", "--runs", "1", "--epochs", "2",
             "--out", tmp_path, *small))
    assert "--resume" in (run / "output.txt").read_text()
    resumed = lines(run / "log.jsonl")
    assert resumed[:1] == first and [r["epoch"] for r in resumed] == [0, 1]
    header, *epochs = lines(tmp_path / "logs" / "shallow-run0.jsonl")
    assert header["dtype"] == "float32" and len(epochs) == 2
    # network3's number: the test accuracy of the best validation epoch.
    best = max(range(2), key=lambda j: (epochs[j]["validation_accuracy"], j))
    table = load(tmp_path / "results.json")
    row, = [r for r in table if r["key"] == "shallow"]
    assert row["gpunn"] == round(100 * epochs[best]["test_accuracy"], 2)


@pytest.mark.system
def test_a_failing_run_fails_the_command_and_the_others_finish(tmp_path):
    # A checkpoint without its run's settings: that run cannot go on.
    run = tmp_path / "runs" / "shallow" / "run-0"
    run.mkdir(parents=True)
    (run / "network.npz").write_bytes(b"not a network")
    p = gpunn("reproduce", "ch1-30", "shallow", "--runs", "1", "--epochs", "1",
              "--out", tmp_path, *SMALL[2:])
    assert p.returncode == 1
    assert "shallow run 0: FAILED with exit code 2" in p.stdout
    assert "1 run(s) failed: shallow run 0" in p.stderr
    assert "cannot read the run's settings" in (run / "output.txt").read_text()
    assert (tmp_path / "logs" / "ch1-30-run0.jsonl").exists()
    assert not (tmp_path / "logs" / "shallow-run0.jsonl").exists()


@pytest.mark.system
def test_bad_arguments_are_refused():
    p = gpunn("reproduce", "chapter2")
    assert p.returncode == 2 and "unknown chapter or row chapter2" in p.stderr
    p = gpunn("reproduce", "--report", "--out", "/nonexistent/folder")
    assert p.returncode == 2 and "no logs folder" in p.stderr


def test_row_metrics_follow_the_book():
    epochs = [{"validation_accuracy": 0.95, "test_accuracy": 0.94},
              {"validation_accuracy": 0.97, "test_accuracy": 0.93},
              {"validation_accuracy": 0.96, "test_accuracy": 0.96}]
    assert reproduce.run_metric("peak_test", epochs) == 96.0
    assert reproduce.run_metric("peak_validation", epochs) == 97.0
    # network3 computes the test accuracy only at a new best validation
    # accuracy (ties included); the last one computed is its number.
    network3 = [{"validation_accuracy": 0.95, "test_accuracy": 0.94},
                {"validation_accuracy": 0.97, "test_accuracy": 0.93},
                {"validation_accuracy": 0.96, "test_accuracy": None},
                {"validation_accuracy": 0.97, "test_accuracy": 0.935}]
    assert reproduce.run_metric("test_at_best_validation", network3) == 93.5


def test_every_number_of_the_issue_is_a_row():
    book = {row.key: row.book for row in reproduce.ROWS}
    assert book == {
        "ch1-30": 95.42, "ch1-100": 96.59, "ch3-30": 95.49, "ch3-100": 96.82,
        "ch3-30-l2": 96.49, "ch3-100-l2": 97.92, "ch3-100-l2-60": 98.04,
        "shallow": 97.80, "basic_conv": 98.78, "dbl_conv": 99.06,
        "dbl_conv_relu": 99.23, "expanded_data_100": 99.37,
        "expanded_data_300": 99.46, "expanded_data_1000": 99.43,
        "expanded_data_double_fc_100": 99.43,
        "expanded_data_double_fc_300": 99.48,
        "expanded_data_double_fc_1000": 99.47, "double_fc_dropout": 99.60,
        "vote": 99.67}
    for row in reproduce.ROWS:  # chapter 6's settings are the experiments'
        if row.chapter == "chapter6" and row.metric != "vote":
            e = row_experiment(row)
            assert (e.epochs, e.book_accuracy) == (row.epochs, row.book)


RESULTS = os.path.join(REPO, "docs", "results")


def row_experiment(row):
    """The experiment (gpunn.experiments) that a chapter-6 row trains."""
    from gpunn import experiments
    return experiments.experiment(
        row.train[0], n=int(row.train[2]) if "--n" in row.train else 100)


@pytest.mark.skipif(not os.path.isdir(os.path.join(RESULTS, "logs")),
                    reason="no committed results")
def test_docs_results_table_is_the_one_its_logs_give():
    table = reproduce.results(os.path.join(RESULTS, "logs"))
    with open(os.path.join(REPO, "docs", "RESULTS.md")) as f:
        text = f.read()
    assert reproduce.markdown(table) in text
    for row in table:  # the committed logs ran the book's settings
        assert row["book_settings"], row["key"]
    for name in os.listdir(os.path.join(RESULTS, "logs")):
        if name.endswith(".jsonl"):
            header, *epochs = lines(os.path.join(RESULTS, "logs", name))
            assert re.fullmatch(r"{}-run{}\.jsonl".format(
                re.escape(header["row"]), header["run"]), name)
            assert header["settings"]["seed"] == header["run"] + 1
            assert [e["epoch"] for e in epochs] == list(range(len(epochs)))


def committed_run_folders():
    """The run folders under docs/results/runs that git holds (not the
    working tree's: a developer's finished runs are there too)."""
    try:
        files = subprocess.run(["git", "ls-files", "docs/results/runs"],
                               cwd=REPO, capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    folders = {}
    for path in files:
        folders.setdefault(os.path.dirname(path), set()).add(os.path.basename(path))
    return folders


def test_committed_runs_in_progress_resume_with_the_books_settings():
    """A run that a session could not finish is committed (run.json,
    network.npz, log.jsonl) where gpunn reproduce --out docs/results goes
    on from it: each is an unfinished run of its row with the book's
    settings (or one of the five networks the vote still waits for),
    its checkpoint holds the epochs its log has, and docs/RESULTS.md
    lists it."""
    import gpunn as g
    from gpunn import saving
    folders = committed_run_folders()
    if not folders:
        pytest.skip("no runs in progress are committed")
    rows = {row.key: row for row in reproduce.ROWS}
    voted = os.path.exists(os.path.join(RESULTS, "logs", reproduce.VOTE_FILE))
    g.use("numpy", "float32")
    for folder, names in folders.items():
        key, run = folder.split("/")[-2:]
        row, index = rows[key], int(run[len("run-"):])
        assert names == {"run.json", "network.npz", "log.jsonl"}, folder
        path = os.path.join(REPO, folder)
        settings = load(os.path.join(path, "run.json"))
        e = row_experiment(row)
        assert settings["experiment"] == row.train[0]
        assert settings.get("n", 100) == e.options.get("n", 100)
        assert (settings["seed"], settings["epochs"], settings["eta"],
                settings["lmbda"], settings["dtype"]) == (
                    index + 1, row.epochs, e.eta, e.lmbda, "float32")
        assert not settings["limit"] and not settings["eval_limit"]
        records = lines(os.path.join(path, "log.jsonl"))
        assert [r["epoch"] for r in records] == list(range(len(records)))
        _, metadata = saving.load(os.path.join(path, "network.npz"))
        assert metadata["epochs_done"] == len(records)
        assert metadata["history"] == records
        finished = len(records) == row.epochs
        assert not finished or (key == "double_fc_dropout" and not voted
                                and index < reproduce.VOTERS), \
            "{}: its row is done; its checkpoint leaves the tree".format(folder)
    with open(os.path.join(REPO, "docs", "RESULTS.md")) as f:
        text = f.read()
    runs = [r for r in reproduce.in_progress(os.path.join(RESULTS, "runs"))
            if "docs/results/runs/{}/run-{}".format(r["key"], r["run"])
            in folders]
    assert len(runs) == len(folders)
    assert reproduce.markdown_in_progress(runs) in text


@pytest.mark.slow
def test_the_vote_of_five_double_fc_dropout_runs(tmp_path):
    from gpunn import saving
    from gpunn.ensemble import ensemble
    import gpunn as g
    out = ok(gpunn("reproduce", "double_fc_dropout", "vote", "--runs", "1",
                   "--epochs", "1", "--limit", "200", "--eval-limit", "100",
                   "--backend", "numpy", "--out", tmp_path))
    assert out.count("started") == 5  # the vote trains five networks
    vote = load(tmp_path / "logs" / "vote.json")
    assert vote["voters"] == ["double_fc_dropout-run{}.jsonl".format(j)
                              for j in range(5)]
    g.use("numpy", "float32")
    nets = [saving.load(tmp_path / "runs" / "double_fc_dropout" /
                        "run-{}".format(j) / "network.npz")[0] for j in range(5)]
    accuracy, _, _ = ensemble(nets, g.load_data()[2])
    assert vote["gpunn"] == round(100 * accuracy, 2)
    table = load(tmp_path / "results.json")
    assert [r["key"] for r in table] == ["double_fc_dropout", "vote"]
    assert not table[1]["book_settings"] and table[1]["book"] == 99.67


@pytest.mark.gpu
@pytest.mark.system
def test_reproduce_on_cupy_runs_several_runs_per_gpu(tmp_path):
    skip_without_cupy()
    out = ok(gpunn("reproduce", "shallow", "ch3-30", "--runs", "2", "--epochs",
                   "1", "--limit", "1000", "--eval-limit", "300",
                   "--backend", "cupy", "--out", tmp_path))
    # Four runs per GPU, no more than the CPU cores that feed them (the
    # double is one GPU).
    side_by_side = min(os.cpu_count(), 4 * backend.gpu_count())
    assert "4 runs of 2 rows on cupy, {} side by side".format(side_by_side) in out
    for name in ("shallow-run1.jsonl", "ch3-30-run1.jsonl"):
        header = lines(tmp_path / "logs" / name)[0]
        assert header["backend"] == "cupy" and "cores" not in header["device"]
    # The same chapter-3 run on the CPU: the same accuracies, to a count.
    ok(gpunn("reproduce", "ch3-30", "--runs", "2", "--epochs", "1", "--limit",
             "1000", "--eval-limit", "300", "--backend", "numpy",
             "--out", tmp_path / "cpu"))
    for j in (0, 1):
        gpu, cpu = (lines(folder / "logs" / "ch3-30-run{}.jsonl".format(j))[1:]
                    for folder in (tmp_path, tmp_path / "cpu"))
        for g, c in zip(gpu, cpu):
            assert abs(g["test_accuracy"] - c["test_accuracy"]) <= 2 / 300


@pytest.mark.system
def test_threads_of_each_run(tmp_path):
    """--threads N gives each run N CPU threads (over $GPUNN_THREADS);
    by default each gets its share of the cores: here, the cores this
    process may use over --jobs."""
    def threads_of_runs(folder):
        logs = sorted(folder.glob("runs/*/run-*/log.jsonl"))
        assert logs
        return {json.loads(log.read_text().splitlines()[-1])["threads"]
                for log in logs}
    def reproduce_ch1(*args, env):
        subprocess.run([sys.executable, "-m", "gpunn", "reproduce", "ch1-30",
                        "--runs", "1", "--epochs", "1", "--limit", "200",
                        "--eval-limit", "100", "--backend", "numpy", *args],
                       env=dict(env, PYTHONPATH=REPO), check=True,
                       capture_output=True, timeout=600)
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("GPUNN_") or k == "GPUNN_CACHE"}
    reproduce_ch1("--jobs", "1", "--threads", "2", "--out", tmp_path / "two",
                  env=dict(environment, GPUNN_THREADS="3"))
    assert threads_of_runs(tmp_path / "two") == {2}
    reproduce_ch1("--jobs", "2", "--out", tmp_path / "share", env=environment)
    assert threads_of_runs(tmp_path / "share") == {
        max(1, len(os.sched_getaffinity(0)) // 2)}


def test_a_run_resumed_in_a_later_session_counts_the_earlier_epochs(tmp_path):
    """The wall time per run of a run that sessions trained in turns: the
    processes before the last left no compact log (they were stopped),
    so the epochs their checkpoint holds count with their seconds."""
    row = {r.key: r for r in reproduce.ROWS}["expanded_data_300"]
    run = reproduce.Run(row, 0, str(tmp_path / "runs" / "run-0"))
    records = [{"epoch": j, "validation_accuracy": 0.99, "test_accuracy": 0.99,
                "seconds": 100.0 + j, "backend": "numpy", "dtype": "float32",
                "device": "cpu"} for j in range(4)]
    result = {"settings": {"seed": 1}, "records": records, "seconds": 250.0,
              "resumed_at": 3}
    reproduce.write_log(run, str(tmp_path), result)
    header = lines(tmp_path / "logs" / run.log_name)[0]
    assert header["wall_seconds"] == 250.0 + 100.0 + 101.0 + 102.0
    # A run that one process trained from the start: its own wall time.
    reproduce.write_log(run, str(tmp_path / "again"),
                        dict(result, resumed_at=0))
    header = lines(tmp_path / "again" / "logs" / run.log_name)[0]
    assert header["wall_seconds"] == 250.0
