"""`python -m yolodiag.cli`, as the single-module cli.py allowed: the console script's entry."""

from yolodiag.cli import main

main()
