"""Celery's command line as httpov starts it (`httpov render`'s render nodes, `httpov flower`): no module is ever
imported from the current folder.

`celery -A httpov ...` puts the current folder first on sys.path while it loads the app (celery.utils.imports
`import_from_cwd`), and `python -m` puts it there for good: started in a folder holding a `httpov.py` (a scene's
folder, say), Celery would run that file instead of httpov. httpov therefore starts Celery as
`python -P -m httpov.celery_main ARGS` (-P: no current folder on sys.path), with Celery's own addition turned off.
A `celery -A httpov worker` typed by hand is Celery's, not httpov's: run it in a folder no one else can write to
(README, Security; the node kit's unit sets its own working directory).

`-A httpov worker ARGS` runs Celery's worker command alone. Celery's umbrella command imports every subcommand and
every installed `celery.commands` plugin before it reads its arguments (Flower with tornado and prometheus_client,
click_repl and prompt_toolkit for `celery amqp`): CPU at each start and memory in the worker's main process that
each render process forked from it then holds (measured in docs/PERFORMANCE.md, "A render node's cost per batch").
The worker command reads the same CELERY_WORKER_* variables as under the umbrella; the umbrella's own options (-b,
--config, --loader, --no-color...) and their variables (CELERY_BROKER, NO_COLOR...) are not httpov's to take: its
settings name the broker (httpov.celery).
"""
from __future__ import annotations

import contextlib
import sys

#: How httpov starts Celery's command line: the arguments go after these.
ARGV = (sys.executable, "-P", "-m", "httpov.celery_main")


def no_import_from_cwd() -> None:
    """Turn off Celery's import from the current folder."""
    from celery.utils import imports

    # ASSUMPTION cwd-in-path: Celery's import_from_cwd and find_module (app, loader and task module imports) enter
    # celery.utils.imports.cwd_in_path(), looked up when they run; checked by tests/integration/test_celery_config.py.
    imports.cwd_in_path = contextlib.nullcontext


def main() -> None:
    """Celery's `celery` command, without the current folder on sys.path."""
    if sys.path and sys.path[0] in ("", "."):  # run without -P: take the current folder off the path all the same
        del sys.path[0]
    no_import_from_cwd()
    if sys.argv[1:4] == ["-A", "httpov", "worker"]:
        worker(sys.argv[4:])
        return
    from celery.__main__ import main as celery_main

    sys.argv[0] = "celery"
    celery_main()


def worker(args: list[str]) -> None:
    """`celery -A httpov worker ARGS` as Celery's umbrella command runs it (its `celery` callback with only `-A`:
    the app in a CLIContext), without importing the umbrella's other commands; exits with the worker's code."""
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.worker import worker as command

    sys.argv = [*ARGV[1:], "-A", "httpov", "worker", *args]  # what a restart (SIGHUP) runs again: this command
    context = CLIContext(app=find_app("httpov"), no_color=False, workdir=None, quiet=False)
    command.main(args=args, prog_name="celery worker", obj=context, auto_envvar_prefix="CELERY_WORKER")  # exits


if __name__ == "__main__":
    main()
