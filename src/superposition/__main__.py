"""``python -m superposition``: the same command line as ``superposition``."""

from .cli import entry

entry()
