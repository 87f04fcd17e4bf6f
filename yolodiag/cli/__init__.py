"""The `yolodiag` command line: parse options, call yolodiag.commands, render, exit.

Thin on purpose, and torch-free at import so that `yolodiag --help` is instant. app.py holds
the Typer app and the one exit path, options.py the options several commands share, commands.py
the commands (importing it registers them on the app), fix_command.py `fix`, run_commands.py
`weights` and `run`. The face is `app` and `main` (the console script, `python -m yolodiag`);
nothing else is meant to be imported from here.
"""

from yolodiag.cli import commands as _commands  # noqa: F401  (registers the commands on `app`)
from yolodiag.cli import fix_command as _fix_command  # noqa: F401  (registers `fix`)
from yolodiag.cli import run_commands as _run_commands  # noqa: F401  (`weights`, `run`)
from yolodiag.cli.app import app, main

__all__ = ["app", "main"]
