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


# ---------------------------------------------------------------- checks
# The argument checks shared by the networks; each returns the value,
# converted, or raises ConfigError naming the argument and what it needs.

def positive_int(name, value):
    """``value`` as an int >= 1 (bools and non-whole numbers refused)."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError("{} must be a positive integer, got {!r}".format(
            name, value))
    return int(value)


def number(name, value, minimum=0.0, allow_minimum=True):
    """``value`` as a finite float >= ``minimum`` (> when not
    ``allow_minimum``)."""
    try:
        x = float(value)
        ok = not isinstance(value, bool) and x == x and x != float("inf") and \
            (x >= minimum if allow_minimum else x > minimum)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ConfigError("{} must be a finite number {} {}, got {!r}".format(
            name, ">=" if allow_minimum else ">", minimum, value))
    return x
