"""errors.py
~~~~~~~~~~~~

The errors gpunn raises on purpose, all under ``GpunnError``; each is
also the built-in kind its users already catch (a bad argument is a
ValueError, as it would be from NumPy).  Messages name the layer,
argument or file, the value found and the value expected.
"""


class GpunnError(Exception):
    """Any error gpunn raises on purpose."""


class ConfigError(GpunnError, ValueError):
    """A layer, network, argument or data set that cannot work as given."""


class DataError(GpunnError, ValueError):
    """A data file is missing, damaged, unsafe or not what was expected."""


class ModelFileError(GpunnError, ValueError):
    """A network file that cannot be read back."""


class BackendError(GpunnError, RuntimeError):
    """The requested backend or dtype cannot be used here."""


class DivergenceError(GpunnError, ArithmeticError):
    """Training produced a cost or weights that are NaN or infinite."""
