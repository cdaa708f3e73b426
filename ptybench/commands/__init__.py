"""Sub-commands of the ``ptybench`` command line, one module each."""
