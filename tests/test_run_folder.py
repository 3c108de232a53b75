"""gpunn.run_folder: a run's files, written as they always were (the
committed runs in progress read and write back byte for byte), a log
being written read up to its last whole line, and the folder of a run
that failed before its first checkpoint taken away."""

import glob
import json
import os
import shutil

import pytest

from gpunn.run_folder import Interrupted, RunFolder, writable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = sorted(glob.glob(os.path.join(REPO, "docs", "results", "runs",
                                          "*", "run-*")))


@pytest.mark.parametrize("folder", COMMITTED or [None])
def test_committed_runs_write_back_byte_for_byte(folder, tmp_path):
    """run.json and log.jsonl as --resume writes them again: the log
    from the checkpoint's history, the settings as read."""
    if folder is None:
        pytest.skip("no runs in progress are committed")
    committed = RunFolder(folder)
    again = RunFolder(str(tmp_path))
    again.write_settings(committed.settings())
    _, metadata = committed.load_checkpoint()
    again.start_log(metadata["history"])
    for name in ("run.json", "log.jsonl"):
        with open(os.path.join(folder, name), "rb") as a, \
                open(os.path.join(tmp_path, name), "rb") as b:
            assert a.read() == b.read(), name
    assert again.records() == committed.records() == metadata["history"]


def test_the_log_a_line_at_a_time(tmp_path):
    run = RunFolder(str(tmp_path))
    assert run.complete_records() == []
    with pytest.raises(FileNotFoundError):
        run.records()
    run.start_log([{"epoch": 0, "validation_accuracy": 0.5}])
    run.append({"epoch": 1, "validation_accuracy": 0.75})
    with open(run.log_path) as f:
        assert f.read() == ('{"epoch": 0, "validation_accuracy": 0.5}\n'
                            '{"epoch": 1, "validation_accuracy": 0.75}\n')
    with open(run.log_path, "a") as f:
        f.write('{"epoch": 2, "valid')  # a line being written
    assert [r["epoch"] for r in run.complete_records()] == [0, 1]
    assert not os.path.exists(run.log_path + ".tmp")


def test_settings_are_indented_json(tmp_path):
    run = RunFolder(str(tmp_path))
    run.write_settings({"experiment": "shallow", "p_dropout": [0.5, 0.5]})
    with open(run.settings_path) as f:
        assert f.read() == ('{\n "experiment": "shallow",\n "p_dropout": '
                            '[\n  0.5,\n  0.5\n ]\n}')
    assert run.settings() == {"experiment": "shallow", "p_dropout": [0.5, 0.5]}


def test_partial_saves_are_removed_and_nothing_else(tmp_path):
    run = RunFolder(str(tmp_path))
    names = [".network.npz.abc123.tmp", "log.jsonl.tmp", "log.jsonl",
             "run.json", "other.tmp"]
    for name in names:
        (tmp_path / name).write_text("")
    run.remove_partial_saves()
    assert sorted(os.listdir(tmp_path)) == ["log.jsonl", "other.tmp",
                                            "run.json"]


def test_a_run_that_fails_before_its_checkpoint_leaves_no_folder(tmp_path):
    folder = tmp_path / "made" / "run"
    with pytest.raises(ValueError):
        with RunFolder(str(folder)).new() as run:
            run.write_settings({})
            raise ValueError("bad data")
    assert not (tmp_path / "made").exists()
    # Ctrl-C keeps it (--resume starts such a run over), and so does a
    # checkpoint.
    for error, saved in ((Interrupted, False), (ValueError, True)):
        with pytest.raises(error):
            with RunFolder(str(folder)).new() as run:
                run.write_settings({})
                if saved:
                    shutil.copy(run.settings_path, run.checkpoint_path)
                raise error("stopped")
        assert json.load(open(folder / "run.json")) == {}
        shutil.rmtree(tmp_path / "made")


def test_an_unwritable_folder_is_refused_at_once(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot write to the run folder"):
        writable(str(blocker))


def test_the_saved_network_of_either_chapter(tmp_path):
    run = RunFolder(str(tmp_path))
    assert run.saved_network() is None
    (tmp_path / "network.json").write_text("{}")
    assert run.saved_network() == run.book_network_path
    assert run.has_book_network() and not run.has_checkpoint()
    (tmp_path / "network.npz").write_text("")
    assert run.saved_network() == run.checkpoint_path
