"""The ``anomseg`` command line."""
