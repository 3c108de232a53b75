"""cli.py
~~~~~~~~~

The old home of the ``gpunn`` command, now gpunn.commands (a module per
command); ``from gpunn.cli import main`` still works.
"""

from gpunn.commands import main, parser  # noqa: F401
from gpunn.run_folder import Interrupted  # noqa: F401
