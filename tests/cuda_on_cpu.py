"""cuda_on_cpu.py: run gpunn's CUDA C kernels on the CPU, for the tests.

The source is compiled as C++ (g++) after a small header that defines
CUDA's names (``__global__``, ``__device__``, ``threadIdx``,
``blockIdx``, ``blockDim``, ``gridDim``), and each kernel gets a
launcher that runs its blocks and threads one after another, as loops.
The kernels' own code is the code a GPU runs: their index arithmetic,
bounds checks, tie rules and float types are checked here.

What it cannot catch: anything between threads (races, ``__syncthreads``,
shared memory: gpunn's kernels use none, and a kernel that did would not
run correctly here), CUDA-only syntax and intrinsics (the NVRTC test
compiles the same source for the GPU), the GPU's float rounding where it
differs from the CPU's (``exp``, ``tanh``, fused multiply-adds: the
tests compare with tolerances), and out-of-bounds accesses, which are
undefined behaviour here too.
"""

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile

import numpy

HEADER = r"""
#include <cmath>
#include <cstdint>
using namespace std;
struct gpunn_dim3 { unsigned x, y, z; };
static gpunn_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
"""

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_CTYPES = {"float": numpy.float32, "double": numpy.float64, "int": numpy.int32,
           "long long": numpy.int64, "unsigned char": numpy.uint8,
           "unsigned int": numpy.uint32, "unsigned long long": numpy.uint64,
           "bool": numpy.bool_}


def kernel_signatures(source, defines):
    """{kernel name: [(type, is_pointer), ...]} of the ``extern "C"
    __global__`` functions of ``source``, with the macros ``defines``
    ({"REAL": "float"}) applied."""
    kernels = {}
    for name, params in _SIGNATURE.findall(source):
        types = []
        for p in params.split(","):
            words = p.replace("*", " * ").split()[:-1]  # drop the name
            pointer = "*" in words
            words = [defines.get(w, w) for w in words
                     if w not in ("const", "*", "__restrict__")]
            types.append((" ".join(words), pointer))
        kernels[name] = types
    return kernels


def _launcher(name, types):
    args = ", ".join("*({}{}*)args[{}]".format(t, "*" if pointer else "", k)
                     for k, (t, pointer) in enumerate(types))
    return """
extern "C" void gpunn_launch_{name}(unsigned gx, unsigned gy, unsigned gz,
                                    unsigned bx, unsigned by, unsigned bz,
                                    void** args) {{
    gridDim = {{gx, gy, gz}};
    blockDim = {{bx, by, bz}};
    for (unsigned k = 0; k < gz; ++k) for (unsigned j = 0; j < gy; ++j)
    for (unsigned i = 0; i < gx; ++i) {{
        blockIdx = {{i, j, k}};
        for (unsigned z = 0; z < bz; ++z) for (unsigned y = 0; y < by; ++y)
        for (unsigned x = 0; x < bx; ++x) {{
            threadIdx = {{x, y, z}};
            {name}({args});
        }}
    }}
}}
""".format(name=name, args=args)


class Module:
    """``source`` compiled for the CPU with ``options`` (NVRTC-style
    ``-DNAME=VALUE``); ``function(name)`` runs a kernel."""

    def __init__(self, source, options=()):
        self.defines = dict(o[2:].split("=", 1) for o in options
                            if o.startswith("-D"))
        self.signatures = kernel_signatures(source, self.defines)
        code = HEADER + "".join("#define {} {}\n".format(k, v)
                                for k, v in self.defines.items()) + source + \
            "".join(_launcher(n, t) for n, t in self.signatures.items())
        self.library = ctypes.CDLL(_compile(code))

    def launch(self, name, grid, block, args):
        """Run kernel ``name`` over ``grid`` x ``block`` threads; ``args``
        are NumPy arrays (passed as pointers to their first element) and
        NumPy scalars, checked against the kernel's parameter types."""
        types = self.signatures[name]
        if len(args) != len(types):
            raise TypeError("{} takes {} arguments, got {}".format(
                name, len(types), len(args)))
        keep, pointers = [], (ctypes.c_void_p * len(args))()
        for k, (arg, (t, pointer)) in enumerate(zip(args, types)):
            want = numpy.dtype(_CTYPES[t])
            if pointer:
                if not isinstance(arg, numpy.ndarray) or arg.dtype != want:
                    raise TypeError("{} argument {}: expected an array of {}, "
                                    "got {!r}".format(name, k, want, _kind(arg)))
                value = ctypes.c_void_p(arg.ctypes.data)
            else:
                if not isinstance(arg, numpy.generic) or arg.dtype != want:
                    raise TypeError("{} argument {}: expected a {} scalar, got "
                                    "{!r}".format(name, k, want, _kind(arg)))
                value = numpy.array(arg)
            keep.append(value)
            pointers[k] = ctypes.addressof(value) if pointer else value.ctypes.data
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        getattr(self.library, "gpunn_launch_" + name)(
            *map(ctypes.c_uint, grid + block), pointers)


def _kind(arg):
    return getattr(arg, "dtype", type(arg).__name__)


def _compile(code):
    """Compile ``code`` into a shared library (cached by its hash)."""
    folder = os.path.join(tempfile.gettempdir(), "gpunn-cuda-on-cpu")
    os.makedirs(folder, exist_ok=True)
    digest = hashlib.sha256(code.encode()).hexdigest()[:16]
    library = os.path.join(folder, digest + ".so")
    if not os.path.exists(library):
        source = os.path.join(folder, digest + ".cpp")
        with open(source, "w") as f:
            f.write(code)
        partial = library + ".{}.tmp".format(os.getpid())
        subprocess.run(["g++", "-O2", "-std=c++17", "-shared", "-fPIC",
                        "-Wall", "-Werror", "-Wno-unused-function",
                        source, "-o", partial], check=True,
                       capture_output=True, text=True)
        os.replace(partial, library)
    return library
