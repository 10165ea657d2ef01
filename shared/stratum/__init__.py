"""Stratum's core library: everything the five functions share.

Functions import `stratum`, never each other. The public pieces are re-exported from the
subpackages' own `__init__` modules (`stratum.graph`, `stratum.executor`, ...).
"""

__version__ = "0.1.0"
