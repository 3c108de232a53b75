"""saving.py
~~~~~~~~~~~~

A trained network3 network to and from a file, without pickle.

network2 saves its networks as JSON; network3 had no way to save one.
Here a network is a NumPy ``.npz`` file holding the arrays ``w0, b0,
w1, b1, ...`` (one pair per layer, on the host, in the network's dtype)
and ``metadata``: a 0-d string array holding a JSON object::

    {"format": "gpunn-network3", "version": 1, "mini_batch_size": 10,
     "dtype": "float32", "layers": [{"type": "ConvPoolLayer", ...}, ...],
     ...anything the caller adds (experiment, epochs_done, history, ...)}

Loading never unpickles (``allow_pickle=False``), checks everything it
reads, and puts the parameters on the active backend in the active dtype,
so a file written on a GPU in float32 loads on a CPU in float64.  Any
problem with a file raises ``ModelFileError``, naming the file.
"""

import contextlib
import functools
import json
import os
import tempfile

import numpy

from gpunn.compute import backend
from gpunn.activations import ACTIVATIONS
from gpunn.errors import ConfigError, ModelFileError
from gpunn.network3 import (ConvPoolLayer, FullyConnectedLayer, Network,
                            SoftmaxLayer)

FORMAT, VERSION = "gpunn-network3", 1
_RESERVED = ("format", "version", "layers", "mini_batch_size", "dtype")


def _error(path, problem):
    return ModelFileError("{}: {}".format(path, problem))


# ---------------------------------------------------------------------------
# Layers as JSON

def _is_count(v):
    return type(v) is int and v >= 1


def _shape(n):
    return ("a list of {} positive integers".format(n),
            lambda v: type(v) is list and len(v) == n and all(map(_is_count, v)))


_COUNT = ("a positive integer", _is_count)
_ACTIVATION = ("one of " + ", ".join(ACTIVATIONS),
               lambda v: isinstance(v, str) and v in ACTIVATIONS)
_PROBABILITY = ("a number in [0, 1)",
                lambda v: type(v) in (int, float) and 0 <= v < 1)

# Each layer type, and the fields of its spec: (description, test).
_LAYER_TYPES = {
    "ConvPoolLayer": (ConvPoolLayer, {
        "filter_shape": _shape(4), "image_shape": _shape(4),
        "poolsize": _shape(2), "activation_fn": _ACTIVATION}),
    "FullyConnectedLayer": (FullyConnectedLayer, {
        "n_in": _COUNT, "n_out": _COUNT, "activation_fn": _ACTIVATION,
        "p_dropout": _PROBABILITY}),
    "SoftmaxLayer": (SoftmaxLayer, {
        "n_in": _COUNT, "n_out": _COUNT, "p_dropout": _PROBABILITY}),
}


def layer_spec(layer):
    """Return the JSON-able dict that describes ``layer`` (not its
    parameters), e.g. ``{"type": "SoftmaxLayer", "n_in": 100, "n_out": 10,
    "p_dropout": 0.0}``.  Raises TypeError for a layer it cannot describe."""
    name = type(layer).__name__
    if _LAYER_TYPES.get(name, (None,))[0] is not type(layer):
        raise ConfigError("cannot save a layer of type {}".format(name))
    spec = {"type": name}
    for field in _LAYER_TYPES[name][1]:
        value = getattr(layer, field)
        if field == "activation_fn":
            if ACTIVATIONS.get(value.__name__) is not value:
                raise ConfigError("cannot save {!r}: its activation {!r} is not "
                                "one of gpunn's".format(layer, value))
            value = value.__name__
        spec[field] = list(value) if isinstance(value, tuple) else value
    return spec


def layer_from_spec(spec):
    """Return a new layer (fresh initial parameters) described by ``spec``,
    a dict as ``layer_spec`` returns.  Raises ValueError if ``spec`` is not
    one, naming the problem."""
    cls, kwargs = _check_spec(spec)
    return cls(**kwargs)


def _check_spec(spec):
    """Return ``(layer class, keyword arguments)`` for ``spec``, or raise
    ValueError.  Checks the type and fields only: whether the sizes fit
    together is left to the layer and to Network."""
    if not isinstance(spec, dict):
        raise ConfigError("a layer spec must be a JSON object, got {!r}"
                         .format(spec))
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _LAYER_TYPES:
        raise ConfigError("unknown layer type {!r}: expected one of {}".format(
            kind, ", ".join(_LAYER_TYPES)))
    cls, fields = _LAYER_TYPES[kind]
    given = set(spec) - {"type"}
    if given != set(fields):
        raise ConfigError("{} has unknown fields {} and lacks {}".format(
            kind, sorted(given - set(fields)) or "none",
            sorted(set(fields) - given) or "none"))
    for field, (description, test) in fields.items():
        if not test(spec[field]):
            raise ConfigError("{}: {} must be {}, got {!r}".format(
                kind, field, description, spec[field]))
    kwargs = {field: spec[field] for field in fields}
    if "activation_fn" in kwargs:
        kwargs["activation_fn"] = ACTIVATIONS[kwargs["activation_fn"]]
    return cls, kwargs


def _parameter_shapes(spec):
    """The shapes of w and b of the layer a valid ``spec`` describes."""
    if spec["type"] == "ConvPoolLayer":
        return tuple(spec["filter_shape"]), (spec["filter_shape"][0],)
    return (spec["n_in"], spec["n_out"]), (spec["n_out"],)


# ---------------------------------------------------------------------------
# Files

def save(net, path, **metadata):
    """Write the network3 network ``net`` to ``path`` (an .npz file) with
    ``metadata``, JSON-able keyword arguments stored beside the layers
    (experiment, hyperparameters, epochs_done, history, ...).

    The write is atomic: a temporary file in the same directory is written,
    synced to disk and renamed onto ``path``, so a crash at any moment
    leaves the old file or the new one, never a partial one.  Returns
    ``path``."""
    path = os.fspath(path)
    clash = sorted(set(metadata) & set(_RESERVED))
    if clash:
        raise ConfigError("metadata keys {} are reserved by the file format"
                         .format(clash))
    dtype = numpy.dtype(net.layers[0].w.dtype)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            info = {"format": FORMAT, "version": VERSION,
                    "layers": [layer_spec(layer) for layer in net.layers],
                    "mini_batch_size": net.mini_batch_size,
                    "dtype": dtype.name, **metadata}
            arrays = {}
            for j, layer in enumerate(net.layers):
                arrays["w{}".format(j)] = backend.to_numpy(layer.w).astype(dtype)
                arrays["b{}".format(j)] = backend.to_numpy(layer.b).astype(dtype)
            numpy.savez(f, metadata=numpy.array(json.dumps(info)),
                        allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the mode open()
        # would.  (Reading the umask sets it for an instant.)
        umask = os.umask(0o077)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load(path):
    """Return ``(net, metadata)`` from a file written by ``save``: a new
    ``network3.Network`` with the saved parameters on the active backend,
    in the active dtype, and the file's JSON object as a dict (the
    caller's metadata plus format, version, layers, mini_batch_size and
    dtype).  Any problem with the file raises ``ModelFileError``.

    Building the layers draws initial weights from ``backend.host_rng``;
    its state is restored after, so loading does not change the random
    stream of the program."""
    path = os.fspath(path)
    error = functools.partial(_error, path)
    arrays = _read_arrays(path)
    if "metadata" not in arrays:
        raise error("no metadata array: not a gpunn network file")
    info = _parse_metadata(path, arrays.pop("metadata"))
    specs = info["layers"]
    expected = {"{}{}".format(p, j) for j in range(len(specs)) for p in "wb"}
    if set(arrays) != expected:
        raise error("{} layers need the arrays {}; missing {}, unexpected {}"
                    .format(len(specs), sorted(expected),
                            sorted(expected - set(arrays)) or "none",
                            sorted(set(arrays) - expected) or "none"))
    # Check the specs and the arrays' shapes before building any layer:
    # a layer's initial weights are as big as its spec says.
    for j, spec in enumerate(specs):
        try:
            _check_spec(spec)
        except ValueError as e:
            raise error("layer {}: {}".format(j, e)) from None
        for name, shape in zip("wb", _parameter_shapes(spec)):
            a = arrays["{}{}".format(name, j)]
            if a.shape != shape or a.dtype.kind != "f":
                raise error("array {}{} is {} of shape {}; layer {} ({}) needs "
                            "a float array of shape {}".format(
                                name, j, a.dtype, a.shape, j, spec["type"],
                                shape))
    rng = backend.host_rng
    state = rng.bit_generator.state
    try:
        net = Network([layer_from_spec(spec) for spec in specs],
                      info["mini_batch_size"])
    except ValueError as e:  # layers whose sizes do not fit together
        raise error(e) from None
    finally:
        rng.bit_generator.state = state
    for j, layer in enumerate(net.layers):
        layer.w = backend.asarray(arrays["w{}".format(j)])
        layer.b = backend.asarray(arrays["b{}".format(j)])
    return net, info


def _read_arrays(path):
    """Every array in the .npz file ``path``, as a dict name -> array."""
    try:
        with open(path, "rb") as f:
            npz = numpy.load(f, allow_pickle=False)
            if not isinstance(npz, numpy.lib.npyio.NpzFile):
                raise _error(path, "a .npy array, not an .npz network file")
            with npz:
                return {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except Exception as e:
        # A damaged file makes zipfile, zlib and numpy raise all sorts of
        # errors (BadZipFile, zlib.error, EOFError, ValueError, ...); an
        # object array is a ValueError, since pickles are not loaded.
        raise _error(path, "cannot read as an .npz file ({}: {})".format(
            type(e).__name__, e)) from None


def _parse_metadata(path, array):
    """The JSON object of the ``metadata`` array, with its format,
    version, layers, mini_batch_size and dtype checked."""
    error = functools.partial(_error, path)
    if array.shape != () or array.dtype.kind != "U":
        raise error("metadata must be a 0-d string array, not {} of shape {}"
                    .format(array.dtype, array.shape))
    try:
        info = json.loads(str(array[()]))
    except (ValueError, RecursionError) as e:
        raise error("metadata is not valid JSON ({})".format(e)) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise error("not a gpunn network file (format is not {!r})"
                    .format(FORMAT))
    if type(info.get("version")) is not int or info["version"] != VERSION:
        raise error("file format version {!r}; this gpunn reads version {}"
                    .format(info.get("version"), VERSION))
    if type(info.get("layers")) is not list or not info["layers"]:
        raise error("metadata 'layers' must be a non-empty list of layer specs")
    if not _is_count(info.get("mini_batch_size")):
        raise error("metadata 'mini_batch_size' must be a positive integer, "
                    "got {!r}".format(info.get("mini_batch_size")))
    if info.get("dtype") not in backend.DTYPES:
        raise error("metadata 'dtype' must be float32 or float64, got {!r}"
                    .format(info.get("dtype")))
    return info
