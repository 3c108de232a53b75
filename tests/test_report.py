"""The benchmark report, ``python -m gpunn.bench.report``, run as a real
subprocess on the hand-made sample files in tests/data/ (a 2-core CPU
machine, in the format of before the driver fields were split, and a GPU
machine with one cell missing), and on the real results in
benchmarks/results/.

Expected values are computed here from the sample JSON with NumPy's own
float formatting, not with the report's helpers, so a wrong lookup, a
ratio the wrong way round or a formatting slip fails a test.
"""

import glob
import json
import os
import subprocess
import sys

import numpy
import pytest

from gpunn.bench import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_SAMPLE = os.path.join(REPO, "tests", "data", "bench_cpu_sample.json")
GPU_SAMPLE = os.path.join(REPO, "tests", "data", "bench_gpu_sample.json")
RESULTS = sorted(glob.glob(os.path.join(REPO, "benchmarks", "results", "*.json")))
DASH = "–"


def run_report(*args):
    """Runs the CLI from the repository root; returns the CompletedProcess."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "gpunn.bench.report", *args],
                          cwd=REPO, env=env, capture_output=True,
                          encoding="utf-8", timeout=120)


def three_digits(x):
    """``x`` to 3 significant digits, trailing zeros kept: 0.160, 33.5."""
    text = numpy.format_float_positional(x, precision=3, unique=False,
                                         fractional=False, trim="k")
    return text.rstrip(".")  # "1230." for 1234


def label(doc):
    """The machine label the report should use for a sample file."""
    m = doc["machine_info"]["gpunn"]
    return m["gpu_name"] or f"{m['cpu_model']}, {m['cpu_count']} cores"


def parse_table(text, first_header):
    """The markdown table whose header starts with ``first_header``, as
    (header, rows), each row a list of cell strings."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith(f"| {first_header} |"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split(" | ")])
    header, separator, rows = table[0], table[1], table[2:]
    assert all(set(s) <= set("-:") for s in separator)
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def measured(doc):
    """{(model, mini_batch_size, framework, device): extra_info} of a file."""
    return {(i["model"], i["mini_batch_size"], i["framework"], i["device"]): i
            for i in (b["extra_info"] for b in doc["benchmarks"])
            if "epoch_seconds" in i}


@pytest.fixture(scope="module")
def samples():
    docs = []
    for path in (CPU_SAMPLE, GPU_SAMPLE):
        with open(path, encoding="utf-8") as f:
            docs.append(json.load(f))
    return docs


@pytest.fixture(scope="module")
def output():
    result = run_report(CPU_SAMPLE, GPU_SAMPLE)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_samples_are_marked_as_not_measurements(samples):
    for doc in samples:
        assert "not a measurement" in doc["note"]
        assert doc["machine_info"]["node"] == "sample"


def test_machines_table(output, samples):
    header, rows = parse_table(output, "Machine")
    assert "## Machines" in output
    for column in ("CPU", "threads", "Python", "NumPy", "CuPy", "torch",
                   "BLAS", "driver", "driver CUDA", "date"):
        assert column in header
    assert [row[0] for row in rows] == [label(doc) for doc in samples]
    for row, doc in zip(rows, samples):
        m = doc["machine_info"]["gpunn"]
        cells = dict(zip(header, row))
        assert cells["threads"] == str(m["threads"])
        assert cells["NumPy"] == m["numpy"]
        assert cells["CuPy"] == (m["cupy"] or DASH)
        assert cells["torch"] == m["torch"]
        assert cells["driver"] == (m.get("nvidia_driver") or DASH)
        assert cells["driver CUDA"] == (m.get("cuda_driver_api") or DASH)
        assert cells["Python"] == doc["machine_info"]["python_version"]
        assert cells["date"].startswith(doc["datetime"][:10])
        assert m["cpu_model"] in cells["CPU"]
    assert "1187" in rows[1] and "51240" in rows[1]
    assert ["570.172.08", "12.8"] == [dict(zip(header, rows[1]))[c]
                                      for c in ("driver", "driver CUDA")]


@pytest.mark.parametrize("old, driver, cuda", [
    ("12080", DASH, "12.8"),  # what machine.py recorded: driverGetVersion()
    (13000, DASH, "13.0"),
    ("570.172.08", "570.172.08", DASH),  # a driver version string
    (None, DASH, DASH),
])
def test_driver_of_files_from_before_the_split(tmp_path, samples, old,
                                               driver, cuda):
    doc = json.loads(json.dumps(samples[1]))
    m = doc["machine_info"]["gpunn"]
    del m["nvidia_driver"], m["cuda_driver_api"]
    m["cuda_driver"] = old
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    header, rows = parse_table(
        report.markdown(report.load_results([str(path)])), "Machine")
    cells = dict(zip(header, rows[0]))
    assert (cells["driver"], cells["driver CUDA"]) == (driver, cuda)


def test_the_result_files_in_the_repository_still_read():
    assert RESULTS, "benchmarks/results/ holds no result files"
    result = run_report(*RESULTS)
    assert result.returncode == 0, result.stderr
    _, rows = parse_table(result.stdout, "Machine")
    assert len(rows) == len(RESULTS)
    _, rows = parse_table(result.stdout, "model")
    assert rows


def test_fraction_of_peak_none_is_a_dash(tmp_path, samples):
    # A GPU machine whose matmul rate could not be measured records
    # fraction_of_matmul_peak as None (gpunn/bench/machine.py).
    doc = json.loads(json.dumps(samples[1]))
    doc["machine_info"]["gpunn"]["matmul_gflops"]["gpu"] = None
    for bench in doc["benchmarks"]:
        if bench["extra_info"]["device"] == "cuda":
            bench["extra_info"]["fraction_of_matmul_peak"] = None
    path = tmp_path / "no_gpu_rate.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    header, rows = parse_table(
        report.markdown(report.load_results([str(path)])), "model")
    table = {(row[0], int(row[1])): dict(zip(header, row)) for row in rows}
    cuda = "NVIDIA H100 80GB HBM3 [cuda]"
    assert table["shallow", 10][f"{cuda} gpunn s"] == "1.22"
    assert table["shallow", 10][f"{cuda} gpunn % peak"] == DASH
    cpu = "NVIDIA H100 80GB HBM3 [cpu]"  # the CPU's rate was measured
    assert table["shallow", 10][f"{cpu} gpunn % peak"] not in (DASH, DASH + "%")


def test_epoch_table_rows_in_book_order(output, samples):
    _, rows = parse_table(output, "model")
    present = set()
    for doc in samples:
        present |= {key[:2] for key in measured(doc)}
    keys = [(row[0], int(row[1])) for row in rows]
    assert sorted(keys) == sorted(present)  # one row per pair, no more
    assert keys == [("shallow", 10), ("shallow", 64), ("basic_conv", 10),
                    ("basic_conv", 64), ("dbl_conv_relu", 10),
                    ("dbl_conv_relu", 64)]


def test_epoch_table_values(output, samples):
    header, rows = parse_table(output, "model")
    table = {(row[0], int(row[1])): dict(zip(header, row)) for row in rows}
    checked = 0
    for doc in samples:
        results = measured(doc)
        for model, size in table:
            cells = table[model, size]
            for device in ("cpu", "cuda"):
                group = f"{label(doc)} [{device}]"
                if not any(k[3] == device for k in results):
                    assert f"{group} gpunn s" not in cells  # no empty groups
                    continue
                ours = results.get((model, size, "gpunn", device))
                theirs = results.get((model, size, "torch", device))
                want = {
                    "gpunn s": three_digits(ours["epoch_seconds"]) if ours else DASH,
                    "torch s": three_digits(theirs["epoch_seconds"]) if theirs else DASH,
                    "gpunn/torch": (f"{ours['epoch_seconds'] / theirs['epoch_seconds']:.2f}"
                                    if ours and theirs else DASH),
                    "gpunn % peak": (three_digits(100 * ours["fraction_of_matmul_peak"]) + "%"
                                     if ours else DASH),
                }
                for column, value in want.items():
                    assert cells[f"{group} {column}"] == value, (model, size, group, column)
                    checked += value != DASH
            if results.get((model, size, "gpunn", "cpu")):
                flops = results[model, size, "gpunn", "cpu"]["flops_per_epoch"]
                assert cells["GFLOP/epoch"] == three_digits(flops / 1e9)
    assert checked > 40


def test_missing_cell_and_a_few_exact_strings(output):
    header, rows = parse_table(output, "model")
    table = {(row[0], int(row[1])): dict(zip(header, row)) for row in rows}
    cuda = "NVIDIA H100 80GB HBM3 [cuda]"
    row = table["dbl_conv_relu", 64]  # torch-cuda was not measured here
    assert row[f"{cuda} gpunn s"] == "0.914"
    assert row[f"{cuda} torch s"] == DASH
    assert row[f"{cuda} gpunn/torch"] == DASH
    row = table["shallow", 64]
    assert row[f"{cuda} torch s"] == "0.160"  # trailing zero kept
    assert row[f"{cuda} gpunn/torch"] == "1.32"  # 0.2117 / 0.1602
    row = table["dbl_conv_relu", 10]
    assert row["AMD EPYC 7B13, 2 cores [cpu] gpunn s"] == "33.5"
    assert row["AMD EPYC 7B13, 2 cores [cpu] gpunn/torch"] == "1.66"  # 33.47 / 20.12
    # basic_conv ran only on the CPU machine
    assert table["basic_conv", 10][f"{cuda} gpunn s"] == DASH


def test_markdown_option_writes_the_same_text(tmp_path, output):
    out = tmp_path / "report.md"
    result = run_report(CPU_SAMPLE, GPU_SAMPLE, "--markdown", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8") == result.stdout == output


def test_functions_give_the_cli_text(output):
    runs = report.load_results([CPU_SAMPLE, GPU_SAMPLE])
    assert len(runs) == 2
    assert report.markdown(runs) == output


def test_png_chart(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    out = tmp_path / "chart.png"
    result = run_report(CPU_SAMPLE, GPU_SAMPLE, "--png", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(str(out))
    height, width = pixels.shape[:2]
    assert 1200 <= width <= 2400 and 600 <= height <= 1400
    # not a blank canvas: many distinct colours (bars, text, legend)
    colours = numpy.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert len(colours) > 50


def test_png_without_matplotlib_is_a_clear_error(tmp_path):
    # Hide matplotlib from the real module run, as on a machine without it.
    code = ("import runpy, sys; sys.modules['matplotlib'] = None; "
            "sys.argv = ['report', sys.argv[1], '--png', sys.argv[2]]; "
            "runpy.run_module('gpunn.bench.report', run_name='__main__')")
    out = tmp_path / "chart.png"
    result = subprocess.run([sys.executable, "-c", code, CPU_SAMPLE, str(out)],
                            cwd=REPO, capture_output=True, encoding="utf-8",
                            env=dict(os.environ, PYTHONIOENCODING="utf-8"),
                            timeout=120)
    assert result.returncode == 2
    assert "matplotlib" in result.stderr
    assert "| model |" in result.stdout  # the table still came out
    assert not out.exists()


@pytest.mark.parametrize("content, complaint", [
    ("this is not JSON\n", "not a JSON file"),
    ('{"machine_info": {}, "datetime": "2026-01-01"}', "benchmarks"),
    ('[{"benchmarks": []}]', "benchmarks"),
])
def test_broken_file_exit_code_2_names_it(tmp_path, content, complaint):
    bad = tmp_path / "broken_result.json"
    bad.write_text(content, encoding="utf-8")
    result = run_report(CPU_SAMPLE, str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert complaint in result.stderr
    assert result.stdout == ""


def test_missing_file_exit_code_2(tmp_path):
    missing = tmp_path / "no_such_result.json"
    result = run_report(str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr


def test_benchmarks_without_extra_info_are_skipped(tmp_path, samples):
    doc = json.loads(json.dumps(samples[0]))
    # an unknown model first, then one lacking epoch_seconds: the first
    # goes after the book's models, the second is skipped
    extra = dict(doc["benchmarks"][0]["extra_info"], model="zzz_custom")
    partial = dict(extra, model="half_described")
    del partial["epoch_seconds"]
    doc["benchmarks"][:0] = [{"name": "a", "stats": {}, "extra_info": extra},
                             {"name": "b", "stats": {}, "extra_info": partial},
                             {"name": "c", "stats": {}}]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    text = report.markdown(report.load_results([str(path)]))
    _, rows = parse_table(text, "model")
    assert [row[0] for row in rows] == ["shallow", "shallow", "basic_conv",
                                       "basic_conv", "dbl_conv_relu",
                                       "dbl_conv_relu", "zzz_custom"]
    assert "half_described" not in text


def test_significant_digits():
    assert report.significant(1234.0) == "1230"
    assert report.significant(9.996) == "10.0"
    assert report.significant(0.0001234) == "0.000123"
    assert report.significant(None) == DASH


def test_busy_over_quiet_columns(tmp_path, samples):
    """Cases measured next to a busy process ("load": "busy") are kept
    apart from the quiet ones and give each backend's busy/quiet ratio;
    a file without them has no such columns."""
    doc = json.loads(json.dumps(samples[0]))
    busy = []
    for bench in doc["benchmarks"]:
        info = bench.get("extra_info") or {}
        if info.get("model") == "dbl_conv_relu" and \
                info.get("mini_batch_size") == 64:
            # gpunn's from the quiet rounds between its busy ones; torch's
            # (as in files without them) from the quiet case.
            slower = 1.3 if info["framework"] == "gpunn" else 2.5
            between = {"quiet_epoch_seconds": 2.0} \
                if info["framework"] == "gpunn" else {}
            busy.append(dict(bench, extra_info=dict(
                info, load="busy", epoch_seconds=info["epoch_seconds"] * slower,
                **between)))
    assert len(busy) == 2
    doc["benchmarks"] += busy
    path = tmp_path / "busy.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    header, rows = parse_table(
        report.markdown(report.load_results([str(path)])), "model")
    table = {(row[0], int(row[1])): dict(zip(header, row)) for row in rows}
    group = f"{label(samples[0])} [cpu]"
    quiet = measured(samples[0])
    row = table["dbl_conv_relu", 64]
    assert row[f"{group} gpunn busy/quiet"] == "{:.2f}".format(
        quiet["dbl_conv_relu", 64, "gpunn", "cpu"]["epoch_seconds"] * 1.3 / 2.0)
    assert row[f"{group} torch busy/quiet"] == "2.50"
    # The quiet columns still hold the quiet times.
    assert row[f"{group} gpunn s"] == three_digits(
        quiet["dbl_conv_relu", 64, "gpunn", "cpu"]["epoch_seconds"])
    assert table["dbl_conv_relu", 10][f"{group} gpunn busy/quiet"] == DASH
    plain, _ = parse_table(report.markdown(report.load_results([CPU_SAMPLE])),
                           "model")
    assert not any("busy" in column for column in plain)
