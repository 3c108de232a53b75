"""Tests of gpunn.saving on real files: round trips of every layer type
and activation, a float32 file read in float64 on real MNIST images, the
host random stream, atomic writes, and damaged or hostile files."""

import json
import os

import numpy as np
import pytest

import gpunn
from gpunn import backend
from gpunn.backend import to_numpy
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network, ReLU,
                            SoftmaxLayer, linear, sigmoid, tanh)
from gpunn.saving import ModelFileError, layer_from_spec, layer_spec, load, save


@pytest.fixture(scope="module")
def mnist_host():
    """(training, test) slices of the real MNIST data, as host arrays."""
    training, _, test = gpunn.load_data()
    return tuple((to_numpy(x[:k]), to_numpy(y[:k]))
                 for (x, y), k in ((training, 1000), (test, 500)))


def small_net(seed=0):
    """Two conv-pool layers, two fully connected layers with dropout, and a
    softmax layer with dropout: every layer type and activation, small
    images (10x10), all parameters random (softmax's too)."""
    gpunn.seed(seed)
    m = 4
    net = Network([
        ConvPoolLayer(filter_shape=(3, 1, 3, 3), image_shape=(m, 1, 10, 10),
                      poolsize=(2, 2), activation_fn=ReLU),    # -> (3, 4, 4)
        ConvPoolLayer(filter_shape=(4, 3, 3, 3), image_shape=(m, 3, 4, 4),
                      poolsize=(2, 2), activation_fn=tanh),    # -> (4, 1, 1)
        FullyConnectedLayer(n_in=4, n_out=6, activation_fn=sigmoid,
                            p_dropout=0.5),
        FullyConnectedLayer(n_in=6, n_out=5, activation_fn=linear,
                            p_dropout=0.25),
        SoftmaxLayer(n_in=5, n_out=3, p_dropout=0.125)], m)
    rng = np.random.default_rng(seed + 100)
    for layer in net.layers:
        layer.w = backend.asarray(rng.normal(size=layer.w.shape))
        layer.b = backend.asarray(rng.normal(size=layer.b.shape))
    return net


def shallow_trained_net(training, seed):
    """784-20-10 sigmoid/softmax network, one epoch on ``training``."""
    gpunn.seed(seed)
    net = Network([FullyConnectedLayer(n_in=784, n_out=20),
                   SoftmaxLayer(n_in=20, n_out=10)], 10)
    net.SGD(training, 1, 10, 0.5, (training[0][:100], training[1][:100]))
    return net


def params(net):
    return [to_numpy(p) for p in net.params]


# ---------------------------------------------------------------------------
# Round trips

def test_layer_specs_are_the_documented_json():
    gpunn.use("numpy", seed=0)
    net = small_net()
    specs = [layer_spec(layer) for layer in net.layers]
    assert specs[0] == {"type": "ConvPoolLayer", "filter_shape": [3, 1, 3, 3],
                        "image_shape": [4, 1, 10, 10], "poolsize": [2, 2],
                        "activation_fn": "ReLU"}
    assert specs[2] == {"type": "FullyConnectedLayer", "n_in": 4, "n_out": 6,
                        "activation_fn": "sigmoid", "p_dropout": 0.5}
    assert specs[4] == {"type": "SoftmaxLayer", "n_in": 5, "n_out": 3,
                        "p_dropout": 0.125}
    for spec in specs:
        assert json.loads(json.dumps(spec)) == spec
        assert layer_spec(layer_from_spec(spec)) == spec


def test_round_trip_every_layer_type_and_activation(backend_name, tmp_path):
    gpunn.use(backend_name, seed=0)
    net = small_net()
    x = np.random.default_rng(1).random((37, 100)).astype(np.float32)
    metadata = {"experiment": "tiny", "epochs_done": 3, "seed": 0,
                "hyperparameters": {"eta": 0.03, "lmbda": 0.1},
                "best_validation_accuracy": 0.5, "backend": backend_name,
                "history": [{"epoch": 0, "test_accuracy": None}]}
    path = tmp_path / "net.npz"
    assert save(net, path, **metadata) == str(path)
    loaded, info = load(path)

    assert [repr(a) for a in loaded.layers] == [repr(a) for a in net.layers]
    assert loaded.mini_batch_size == net.mini_batch_size == 4
    for p, q in zip(params(net), params(loaded)):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_array_equal(p, q)
    output = to_numpy(loaded.feedforward(x))
    np.testing.assert_array_equal(to_numpy(net.feedforward(x)), output)
    np.testing.assert_array_equal(to_numpy(net.predict(x)),
                                  to_numpy(loaded.predict(x)))
    assert output.std(axis=0).min() > 0.01  # the outputs depend on x
    assert {k: info[k] for k in metadata} == metadata
    assert info["format"] == "gpunn-network3" and info["version"] == 1
    assert info["dtype"] == "float32"
    assert info["layers"] == [layer_spec(layer) for layer in net.layers]


def test_float32_file_loads_in_float64_on_mnist(backend_name, tmp_path,
                                                mnist_host):
    """Written on ``backend_name`` in float32 (on a GPU where there is one),
    read on NumPy in float64: same parameters, same digits."""
    training, (test_x, test_y) = mnist_host
    gpunn.use(backend_name, "float32")
    net = shallow_trained_net(training, seed=2)
    expected = to_numpy(net.predict(test_x))
    assert (expected == test_y).mean() > 0.6  # it learned something
    path = save(net, tmp_path / "shallow.npz", backend=backend_name)

    gpunn.use("numpy", "float64")
    loaded, info = load(path)
    assert info["dtype"] == "float32" and info["backend"] == backend_name
    for p, q in zip(params(net), loaded.params):
        assert type(q) is np.ndarray and q.dtype == np.float64
        np.testing.assert_array_equal(p.astype(np.float64), q)
    np.testing.assert_array_equal(to_numpy(loaded.predict(test_x)), expected)


def test_loading_leaves_the_host_random_stream_alone(backend_name, tmp_path):
    gpunn.use(backend_name, seed=0)
    path = save(small_net(), tmp_path / "net.npz")
    gpunn.seed(5)
    without_load = backend.host_rng.random(3)
    gpunn.seed(5)
    load(path)
    np.testing.assert_array_equal(backend.host_rng.random(3), without_load)


# ---------------------------------------------------------------------------
# Atomic writes

def test_save_leaves_no_temporary_file(tmp_path):
    gpunn.use("numpy", seed=0)
    path = tmp_path / "net.npz"
    save(small_net(0), path)
    save(small_net(1), path, epochs_done=2)  # overwrites
    assert os.listdir(tmp_path) == ["net.npz"]
    assert load(path)[1]["epochs_done"] == 2
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("bad", [{"history": object()}, {"seen": {1, 2}}])
def test_failed_save_keeps_the_old_file(tmp_path, bad):
    gpunn.use("numpy", seed=0)
    path = tmp_path / "net.npz"
    old = small_net(0)
    save(old, path, epochs_done=1)
    before = path.read_bytes()
    with pytest.raises((TypeError, ValueError)):
        save(small_net(1), path, epochs_done=2, **bad)
    assert os.listdir(tmp_path) == ["net.npz"]
    assert path.read_bytes() == before
    loaded, info = load(path)
    assert info["epochs_done"] == 1
    for p, q in zip(params(old), params(loaded)):
        np.testing.assert_array_equal(p, q)


def test_save_refuses_reserved_metadata_keys(tmp_path):
    gpunn.use("numpy", seed=0)
    with pytest.raises(ValueError, match="reserved"):
        save(small_net(), tmp_path / "net.npz", layers=[])
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# Bad files: each a ModelFileError naming the file

@pytest.fixture
def good_file(tmp_path):
    gpunn.use("numpy", seed=0)
    return save(small_net(), tmp_path / "good.npz")


def rewrite(good_file, path, edit_info=None, edit_arrays=None):
    """Write ``path``: the contents of ``good_file``, with its metadata
    JSON and its arrays (a dict) changed by the given functions."""
    with np.load(good_file) as npz:
        arrays = {name: npz[name] for name in npz.files}
    info = json.loads(str(arrays["metadata"]))
    if edit_info:
        edit_info(info)
    arrays["metadata"] = np.array(json.dumps(info))
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(path, **arrays)
    return str(path)


def assert_bad(path, *words):
    with pytest.raises(ModelFileError) as e:
        load(path)
    message = str(e.value)
    assert str(path) in message
    for word in words:
        assert word in message
    return message


def test_missing_file(tmp_path):
    assert_bad(tmp_path / "absent.npz", "no such file")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    assert_bad(path)


def test_truncated_file(tmp_path, good_file):
    data = open(good_file, "rb").read()
    for k in (len(data) // 2, len(data) - 1, 10):
        path = tmp_path / "truncated_{}.npz".format(k)
        path.write_bytes(data[:k])
        assert_bad(path)


def test_damaged_bytes_give_a_model_file_error_or_a_network(tmp_path,
                                                            good_file):
    """Bytes changed anywhere: the file loads (the change hit bytes nobody
    checks) or raises ModelFileError, never any other exception."""
    data = open(good_file, "rb").read()
    rng = np.random.default_rng(0)
    path = tmp_path / "damaged.npz"
    errors = 0
    for _ in range(300):
        damaged = bytearray(data)
        for i in rng.integers(len(data), size=rng.integers(1, 4)):
            damaged[i] = rng.integers(256)
        path.write_bytes(damaged)
        try:
            load(path)
        except ModelFileError as e:
            assert str(path) in str(e)
            errors += 1
    assert errors > 200


def test_deeply_nested_json(tmp_path):
    path = tmp_path / "deep.npz"
    np.savez(path, metadata=np.array("[" * 100000 + "]" * 100000))
    assert_bad(path, "JSON")


def test_npy_file_is_not_a_network(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    assert_bad(path, ".npy")


def test_pickled_object_array_is_refused(tmp_path, good_file):
    def objects(arrays):
        arrays["w0"] = np.array([{"a": 1}, None], dtype=object)
    assert_bad(rewrite(good_file, tmp_path / "pickled.npz",
                       edit_arrays=objects))

    def object_metadata(arrays):
        arrays["metadata"] = np.array(json.loads(str(arrays["metadata"])),
                                      dtype=object)
    assert_bad(rewrite(good_file, tmp_path / "pickled_meta.npz",
                       edit_arrays=object_metadata))


def _set(j, field, value):
    def edit(info):
        info["layers"][j][field] = value
    return edit


def _drop(key):
    def edit(info):
        del info[key]
    return edit


@pytest.mark.parametrize("edit, words", [
    (_set(2, "type", "RecurrentLayer"), ["unknown layer type", "RecurrentLayer"]),
    (_set(0, "stride", 2), ["layer 0", "unknown fields", "stride"]),
    (_set(2, "activation_fn", "softplus"), ["activation_fn", "softplus"]),
    (_set(4, "p_dropout", 1.0), ["p_dropout"]),
    (_set(4, "p_dropout", "0.5"), ["p_dropout"]),
    (_set(2, "n_out", True), ["n_out"]),
    (_set(2, "n_out", 6.0), ["n_out"]),
    (_set(0, "filter_shape", [3, 1, 3]), ["filter_shape"]),
    (_set(0, "image_shape", [8, 1, 10, 10]), ["mini_batch_size"]),
    (_set(1, "image_shape", [4, 3, 5, 5]), ["layer 1", "gives 48"]),
    (_drop("format"), ["not a gpunn network file"]),
    (_drop("mini_batch_size"), ["mini_batch_size"]),
    (lambda info: info.update(version=2), ["version 2"]),
    (lambda info: info.update(layers=[]), ["layers"]),
    (lambda info: info.update(dtype="float16"), ["dtype"]),
])
def test_bad_metadata(tmp_path, good_file, edit, words):
    assert_bad(rewrite(good_file, tmp_path / "bad.npz", edit_info=edit), *words)


def test_invalid_json(tmp_path, good_file):
    def garble(arrays):
        arrays["metadata"] = np.array('{"format": "gpunn-network3", ')
    assert_bad(rewrite(good_file, tmp_path / "garbled.npz", edit_arrays=garble),
               "JSON")


def test_wrong_array_shape(tmp_path, good_file):
    def transpose(arrays):
        arrays["w2"] = arrays["w2"].T
    assert_bad(rewrite(good_file, tmp_path / "shape.npz", edit_arrays=transpose),
               "w2", "(6, 4)", "(4, 6)")


def test_integer_array(tmp_path, good_file):
    def to_int(arrays):
        arrays["b1"] = arrays["b1"].astype(np.int32)
    assert_bad(rewrite(good_file, tmp_path / "int.npz", edit_arrays=to_int),
               "b1")


def test_missing_and_extra_arrays(tmp_path, good_file):
    assert_bad(rewrite(good_file, tmp_path / "no_w1.npz",
                       edit_arrays=lambda arrays: arrays.pop("w1")),
               "missing ['w1']")
    assert_bad(rewrite(good_file, tmp_path / "no_metadata.npz",
                       edit_arrays=lambda arrays: arrays.pop("metadata")),
               "metadata")
    assert_bad(rewrite(good_file, tmp_path / "extra.npz",
                       edit_arrays=lambda arrays: arrays.update(w9=np.ones(2))),
               "w9")


def test_a_good_file_still_loads_after_the_rewrites(tmp_path, good_file):
    """The bad files above differ from a good one only by their edit."""
    loaded, _ = load(rewrite(good_file, tmp_path / "same.npz"))
    assert len(loaded.layers) == 5
