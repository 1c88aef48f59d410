"""The `httpov` command: parse options, make one library call, print the result."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from httpov.errors import BadInputError, BrokerUnavailableError, HttpovError, OptionError, flag
from httpov.settings import Settings
from httpov.states import JobState
from httpov.text import shown

if TYPE_CHECKING:
    from httpov.options import SubmitOptions
    from httpov.view import JobView


class _Group(click.Group):
    """Turns httpov's errors into one line on stderr and the error's exit code (see README: exit codes)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HttpovError as exc:
            said = exc.said(flag) if isinstance(exc, OptionError) else str(exc)  # fields as the flags typed
            click.echo(f"httpov: error: {shown(said)}", err=True)
            if exc.hint:
                click.echo(f"hint: {shown(exc.hint)}", err=True)
            ctx.exit(exc.exit_code)


def _client(ctx: click.Context) -> Any:
    """The one place the CLI chooses how it reaches the farm: through its web API with a token when a server is
    set (--server, HTTPOV_SERVER, `server` in the config file), else Redis and storage directly (an operator's)."""
    from httpov.farm import connect

    if not ctx.obj.server:
        return connect(ctx.obj)
    from httpov.terminal import Transfer

    client = connect(ctx.obj, Transfer)
    if client.token_in_clear:
        click.echo(f"warning: the token goes unencrypted to {shown(client.server)}: use https://", err=True)
    return client


#: The commands that run through a farm's web API with --server; every other one acts on the farm directly (Redis,
#: its files, its processes) and is refused with --server.
REMOTE_COMMANDS = ("submit", "status", "watch", "fetch", "cancel", "pause", "resume", "retry", "priority", "delete",
                   "nodes", "metrics", "config", "events")


@click.group(cls=_Group)
@click.version_option(package_name="httpov")
@click.option("--server", metavar="URL", help="Reach the farm through its `httpov web` at URL with the token in "
              "HTTPOV_TOKEN (no broker password needed); also HTTPOV_SERVER, or `server` in the config file.")
@click.pass_context
def cli(ctx: click.Context, server: str | None) -> None:
    """Distributed POV-Ray rendering: submit scenes, render nodes run `celery -A httpov worker`."""
    from httpov.settings import check_server

    settings = Settings.from_env()
    if server is not None:
        check_server(server)
        settings = settings.with_(server=server)
    ctx.obj = settings
    command = ctx.invoked_subcommand
    if settings.server and command is not None and command not in REMOTE_COMMANDS:
        raise BadInputError(f"`httpov {command}` acts on the farm directly (Redis, its storage and files): it does "
                            f"not run with --server {shown(settings.server)}",
                            hint=f"with --server: {', '.join(REMOTE_COMMANDS)}; `{command}` runs on the operator's "
                                 "machine, without --server and HTTPOV_SERVER")


@cli.command()
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("--frames", type=int, help="Frames in the animation (sets Final_Frame); default: the ini's range.")
@click.option("--width", type=int, help="Image width in pixels, instead of the ini's Width (the ini is not edited).")
@click.option("--height", type=int, help="Image height in pixels, instead of the ini's Height.")
@click.option("--count", type=int, help="Frames per batch (one task each), at most; default: adaptive, about 2.5 s "
              "of rendering per batch from this scene's measured frame times (at most 4 for a new scene).")
@click.option("--slices", metavar="N|auto", help="Split each frame into this many row slices, stitched afterwards; "
              "auto: as many as the live render processes need, of equal cost when this scene was sliced before.")
@click.option("--slice-rows", type=int, help="Rows per slice, instead of --slices.")
@click.option("--name", help="Job name, display text only (default: the scene's name).")
@click.option("--time-limit", type=int, help="Seconds a batch may run (at most HTTPOV_TASK_TIME_LIMIT).")
@click.option("--priority", type=int, default=5, show_default=True, help="0 (lowest) to 9 (highest).")
@click.option("--wait", is_flag=True, help="Show progress until the job ends; exit 0 only if every frame rendered.")
@click.option("--radiosity-cache", metavar="[auto|off|shared]", default="auto", show_default=True,
              help="auto: a sliced radiosity frame gets one pre-pass whose cache all its slices load (no bands at "
              "slice edges); shared: one cache for every frame of an animation whose geometry and lights do not "
              "move (less flicker, less time); off: none.")
@click.option("--photons", metavar="[shared|off]", default="shared", show_default=True,
              help="shared: a sliced frame's photons are shot once, by a pre-pass, into a map all its slices load "
              "(the same pixels, less CPU); off: every slice shoots its own. Whole frames always shoot their own.")
@click.option("--any-povray", is_flag=True, help="Let nodes with any povray version render the job (default: only "
              "the version of the first node that starts it, so that every frame comes from one build).")
@click.option("--user", help="Whose job this is (default: your login name); the record says an operator submitted "
              "it for them.")
@click.option("--max-processes", type=int, help="At most this many render processes on the job at once.")
@click.option("--max-nodes", type=int, help="At most this many render nodes on the job at once.")
@click.option("--pool", help="Render only on nodes of this render pool (HTTPOV_POOLS on the node).")
@click.option("--after", "after", help="JOB[,JOB...]: wait (state waiting, no render process, nothing queued) until "
              "these jobs are done; if one fails or is cancelled this job fails with the reason.")
@click.option("--after-frames", help="JOB: send frame N once frame N of JOB is done (a post-process job on a render "
              "job); frames JOB does not render go at once.")
@click.option("--after-anyway", is_flag=True, help="With --after/--after-frames: go on even if a job it waits for "
              "fails, is cancelled or is deleted (default: fail too).")
@click.option("--strict", is_flag=True, help="Refuse a scene whose ini has a key that is no POV-Ray ini option "
              "(a typo such as Widht=640; exit 3, nothing queued) instead of warning of it.")
@click.option("--notify", "notify", multiple=True, metavar="URL", help="POST the job's events to this http(s) URL "
              "(signed with HTTPOV_WEBHOOK_SECRET); may be given up to 4 times.")
@click.pass_context
def submit(ctx: click.Context, scene: Path, frames: int | None, width: int | None, height: int | None,
           count: int | None, slices: str | None, slice_rows: int | None, name: str | None, time_limit: int | None,
           priority: int, wait: bool, radiosity_cache: str, photons: str, any_povray: bool, user: str | None,
           max_processes: int | None, max_nodes: int | None, pool: str | None, strict: bool,
           notify: tuple[str, ...], after: str | None, after_frames: str | None, after_anyway: bool) -> None:
    """Queue SCENE (a .zip, a folder, or a .ini/.pov file) for rendering."""
    options = _submit_options(ctx.obj, name=name, frames=frames, width=width, height=height, count=count, slices=slices,
                              slice_rows=slice_rows,
                              priority=priority, time_limit=time_limit, radiosity_cache=radiosity_cache,
                              photons=photons,
                              any_povray=any_povray, user=user, max_processes=max_processes, pool=pool,
                              max_nodes=max_nodes, strict=strict, notify=notify or None, after=after,
                              after_frames=after_frames, after_anyway=after_anyway)
    client = _client(ctx)
    sub = client.submit(scene, options)
    click.echo(f"job {sub.describe()}")
    click.echo(f"scene {'uploaded' if sub.uploaded else 'already stored'} as {sub.spec.scene_key}")
    for item in sub.ignored:
        click.echo(f"warning: ignored ini option {shown(repr(item)[:80])} (httpov sets it, or does not allow it)",
                   err=True)
    for note in sub.notes:
        click.echo(f"note: {shown(note)}", err=True)
    for warning in sub.warnings:
        click.echo(f"warning: {shown(warning)}", err=True)
    if wait:
        from httpov.terminal import JobProgress

        with JobProgress() as progress:
            client.wait(sub.spec.id, progress, on_outage=_outage)


def _submit_options(settings: Settings, **given: object) -> SubmitOptions:
    """SubmitOptions.parse (where every submit option is checked), its errors said with the flags as typed."""
    from httpov.options import OptionError, SubmitOptions

    try:
        return SubmitOptions.parse(given, settings)
    except OptionError as exc:
        raise BadInputError(exc.said(lambda field: "--" + field.replace("_", "-")), exc.hint) from None


#: What `httpov status` lists without --limit or --all: the newest jobs, newest last.
STATUS_LIMIT = 20
JOB_STATES = tuple(state.value for state in JobState if state != JobState.DELETING)


@cli.command()
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object for JOB, else a list).")
@click.option("--state", "states", help=f"Only jobs in these states, comma-separated ({', '.join(JOB_STATES)}).")
@click.option("--name", help="Only jobs whose name matches this shell-style pattern, e.g. 'shot-*'.")
@click.option("--user", help="Only the jobs of this owner (submit --user).")
@click.option("--limit", type=int, help=f"The newest N matching jobs, newest last (default {STATUS_LIMIT}).")
@click.option("--all", "every", is_flag=True, help="Every matching job, however many.")
@click.pass_context
def status(ctx: click.Context, job: str | None, as_json: bool, states: str | None, name: str | None,
           user: str | None, limit: int | None, every: bool) -> None:
    """The newest jobs as a table, or one job in detail (progress, ETA, who renders what, failures)."""
    from httpov import terminal

    client = _client(ctx)
    if job:
        one = client.view(job)
        if as_json:
            click.echo(json.dumps(one.to_json(), indent=2))
        else:
            terminal.console().print(terminal.job_panel(one))
        return
    wanted = [s.strip() for s in states.split(",") if s.strip()] if states else None
    for state in wanted or []:
        if state not in JOB_STATES:
            raise BadInputError(f"--state {shown(state)!r} is not a job state: {', '.join(JOB_STATES)}")
    if limit is not None and limit <= 0:
        raise BadInputError(f"--limit must be at least 1, got {limit}")
    if every and limit is not None:
        raise BadInputError("give --limit N or --all, not both")
    cap = None if every else (limit or STATUS_LIMIT)
    jobs = client.views(wanted, name, user, cap)
    if as_json:
        click.echo(json.dumps([j.to_json() for j in jobs], indent=2))
        return
    if not jobs:
        filtered = wanted or name is not None or user is not None
        click.echo("no job matches" if filtered else "no jobs yet: `httpov submit SCENE` queues one")
        return
    terminal.console().print(terminal.status_table(jobs))
    for j in jobs:
        if j.pool_live is False:
            click.echo(f"warning: job {shown(j.id)} waits: no live render node is in pool {shown(j.pool)}", err=True)
    if cap is not None and len(jobs) == cap and client.job_count() > cap:
        click.echo(f"(the newest {cap} shown: --limit N or --all for more)", err=True)


@cli.command()
@click.argument("job")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between updates.")
@click.option("--once", is_flag=True, help="Show the job once and return.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per update (JSON lines).")
@click.pass_context
def watch(ctx: click.Context, job: str, interval: float, once: bool, as_json: bool) -> None:
    """Follow JOB live until it ends: progress bar, frames done/failed/rendering, render nodes, rate and ETA."""
    from httpov import terminal

    if interval <= 0:
        raise BadInputError(f"--interval must be greater than 0, got {interval}")
    out = terminal.console()
    last = None
    with contextlib.ExitStack() as stack:
        live = stack.enter_context(terminal.watch_live(out)) if out.is_terminal and not as_json else None
        for view in _client(ctx).follow(job, poll=interval, timeout=0 if once else None, on_outage=_outage):
            if as_json:
                click.echo(json.dumps(view.to_json()))
            elif live is not None:
                live.update(terminal.job_panel(view), refresh=True)
            elif _changes(view) != last:  # to a file or pipe: a new view only when something happened
                out.print(terminal.job_panel(view))
                out.print()
            last = _changes(view)
    if view.state in (JobState.FAILED, JobState.CANCELLED):  # as `submit --wait`: exit 0 only if every frame rendered
        from httpov.client import job_failed

        raise job_failed(view)


def _changes(v: JobView) -> tuple:
    return (v.state, v.frames_done, v.frames_failed, tuple(r.batch for r in v.running),
            v.prepass.done if v.prepass else None)


@cli.command()
@click.argument("job")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Folder for frames and logs.")
@click.option("--video", type=click.Path(path_type=Path), help="Encode the frames in order into out.mp4 or out.gif.")
@click.option("--fps", type=float, default=24.0, show_default=True, help="Frames per second of --video.")
@click.option("--contact-sheet", "sheet", type=click.Path(path_type=Path), help="Tile thumbnails into a PNG.")
@click.option("--thumb", type=int, default=160, show_default=True, help="Thumbnail size on the contact sheet.")
@click.pass_context
def fetch(ctx: click.Context, job: str, output: Path | None, video: Path | None, fps: float, sheet: Path | None,
          thumb: int) -> None:
    """Download JOB's rendered frames (PNG) and logs into --output, and/or make a video or contact sheet of them."""
    import tempfile

    from httpov import media

    if output is None and video is None and sheet is None:
        raise BadInputError("fetch needs somewhere to put the frames",
                            hint="give --output DIR, --video out.mp4 (or .gif), or --contact-sheet sheet.png")
    if video is not None:
        if video.suffix.lower() not in media.VIDEO_SUFFIXES:
            raise BadInputError(f"--video {video.name}: the name must end in .mp4 or .gif")
        media.ffmpeg_exe()  # before downloading anything: without imageio-ffmpeg there is no video
    client = _client(ctx)
    with tempfile.TemporaryDirectory(prefix="httpov-fetch-") as tmp:
        folder = output or Path(tmp)
        images = client.fetch(job, folder, _counter("downloading"))
        if output is not None:
            click.echo(f"{len(images)} frame(s) in {output}, logs in {output / 'logs'} "
                       f"(job {client.state(job)})")
        if video is not None:
            media.encode(images, video, fps, _counter(f"encoding {video.name}, frame"), ctx.obj.max_pixels)
            click.echo(f"{video}: {len(images)} frame(s) at {fps:g} fps")
        if sheet is not None:
            media.contact_sheet(images, sheet, thumb, on_frame=_counter("contact sheet, frame"),
                                max_pixels=ctx.obj.max_pixels)
            click.echo(f"{sheet}: contact sheet of {len(images)} frame(s)")


_ACCOUNTS = click.option("--accounts", type=click.Path(path_type=Path),
                         show_default="HTTPOV_WEB_ACCOUNTS, else $XDG_DATA_HOME/httpov/web-accounts",
                         help="The accounts file (name:argon2 hash lines), written by `httpov web-user add`.")


def _given(ctx: click.Context, name: str) -> bool:
    """Whether option `name` was given on the command line (else its setting, HTTPOV_WEB_..., applies)."""
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; put a TLS proxy in front of anything but loopback.")
@click.option("--port", type=int, default=8080, show_default=True, help="TCP port to listen on.")
@click.option("--refresh", type=int, default=3, show_default=True, help="Seconds between the pages' updates.")
@_ACCOUNTS
@click.option("--tokens", "token_file", type=click.Path(path_type=Path),
              help="Deprecated: a file of farm-wide bearer tokens, one a line, each acting as an admin of no account "
              "(default: HTTPOV_WEB_TOKEN_FILE; also HTTPOV_WEB_TOKENS). Use `httpov web-token add NAME` instead.")
@click.option("--public-read", is_flag=True, help="Let anyone who reaches the page read it as a viewer (every "
              "job's progress, no pictures or downloads); control still needs a signed-in user or a token.")
@click.option("--behind-proxy", is_flag=True,
              help="A TLS proxy (nginx, caddy) is in front: trust its X-Forwarded-For, -Proto and -Host (the "
              "client's address for the sign-in limit; https makes the session cookie Secure). Without it they are "
              "ignored. Let only the proxy reach the port. Also: HTTPOV_WEB_BEHIND_PROXY=1.")
@click.option("--sign-in-attempts", type=click.IntRange(min=1), default=Settings.web_sign_in_attempts,
              show_default="HTTPOV_WEB_SIGN_IN_ATTEMPTS, else 5",
              help="Failed sign-ins for one user or from one address, within --sign-in-window, after which "
              "further ones are refused (429) until the window has passed.")
@click.option("--sign-in-window", type=click.IntRange(min=1), default=Settings.web_sign_in_window,
              show_default="HTTPOV_WEB_SIGN_IN_WINDOW, else 600", help="Seconds the failed sign-ins are counted over.")
@click.pass_context
def web(ctx: click.Context, host: str, port: int, refresh: int, accounts: Path | None, token_file: Path | None,
        public_read: bool, behind_proxy: bool, sign_in_attempts: int, sign_in_window: int) -> None:
    """The farm in a browser, behind a login: jobs, frames, logs, submit and control, and its JSON API."""
    _need_web_extra()
    from httpov import web as web_ui
    from httpov.web.auth import Gate, SignInLimit, read_tokens

    settings: Settings = ctx.obj  # an option given on the command line wins over its HTTPOV_WEB_* setting
    accounts = accounts or settings.web_accounts
    token_file = token_file or settings.web_token_file
    behind_proxy = behind_proxy or settings.web_behind_proxy
    attempts = sign_in_attempts if _given(ctx, "sign_in_attempts") else settings.web_sign_in_attempts
    window = sign_in_window if _given(ctx, "sign_in_window") else settings.web_sign_in_window
    gate = Gate(accounts, read_tokens(settings.web_tokens, token_file), public_read, SignInLimit(attempts, window))
    if gate.tokens:
        click.echo(f"warning: {len(gate.tokens)} farm-wide token(s) (HTTPOV_WEB_TOKENS, --tokens) act as an admin of "
                   "no account and are deprecated: give each script its account's own token with `httpov web-token "
                   "add NAME`, then drop them", err=True)
    if public_read and not web_ui.is_loopback(host):
        click.echo(f"warning: --public-read on {host}, not a loopback address: whoever reaches it sees every job",
                   err=True)
    if behind_proxy and not web_ui.is_loopback(host):
        click.echo(f"warning: --behind-proxy on {host}, not a loopback address: whoever reaches this port without "
                   "the proxy can choose the address the sign-in limit counts; let only the proxy reach it", err=True)
    web_ui.serve(ctx.obj, gate, host, port, refresh, behind_proxy=behind_proxy,
                 ready=lambda url: click.echo(f"httpov web on {url} (Ctrl-C stops it)"))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def flower(ctx: click.Context, flower_options: tuple[str, ...]) -> None:
    """Celery's monitor (Flower) for this farm, behind a login wherever it is started: 127.0.0.1:5555 unless
    --address/--port say otherwise; it refuses to start without FLOWER_BASIC_AUTH=user:password (or
    --basic-auth=user:password, or OAuth with --auth). Other options go to Flower as they are (--port=5556)."""
    import importlib.util
    import os

    from httpov.celery_main import ARGV as CELERY
    from httpov.local_farm import worker_env

    if importlib.util.find_spec("flower") is None:
        raise HttpovError("httpov flower needs Flower", hint="pip install 'httpov[flower]'")
    if any(option.lstrip("-").replace("_", "-").split("=")[0] == "conf" for option in flower_options):
        raise BadInputError("httpov flower runs Flower with httpov's own configuration (its login): no --conf",
                            hint="give Flower's options on the command line or as FLOWER_* variables")
    conf = Path(__file__).with_name("flowerconfig.py")
    argv = [*CELERY, "-A", "httpov", "flower", f"--conf={conf}", *flower_options]  # nothing from the current folder
    sys.stdout.flush()
    os.execve(sys.executable, argv, worker_env(ctx.obj))  # Flower is this process: signals reach it directly


def _need_web_extra() -> None:
    import importlib.util

    for module in ("argon2", "flask", "flask_wtf", "cheroot"):
        if importlib.util.find_spec(module) is None:
            raise HttpovError(f"httpov web needs {module}", hint="pip install 'httpov[web]'")


def _audit(ctx: click.Context, action: str, detail: str = ""):
    """Record the token or account change made inside the block in the audit log, as the local operator: done, or
    refused with the reason (httpov.audit.recording; Client's methods record job actions themselves)."""
    from httpov.access import local_operator
    from httpov.audit import recording

    try:
        log = _client(ctx).audit
    except BrokerUnavailableError as exc:  # the accounts file is the operator's: a change needs no Redis
        click.echo(f"httpov: warning: not recorded in the audit log: {shown(str(exc))}", err=True)
        log = None
    return recording(log, local_operator(), action, detail=detail)


@cli.group("web-user")
def web_user() -> None:
    """Accounts of `httpov web` (a file the operator manages)."""


def _accounts_file(ctx: click.Context, accounts: Path | None) -> Path:
    """The accounts file a `web-user` command works on, given roles first if it was written before them."""
    _need_web_extra()
    from httpov.web.auth import migrate_accounts

    accounts = accounts or ctx.obj.web_accounts
    note = migrate_accounts(accounts)
    if note:
        click.echo(f"httpov: {note}", err=True)
    return accounts


_ROLE = click.Choice(["admin", "user", "viewer"])


@web_user.command("add")
@click.argument("name")
@_ACCOUNTS
@click.option("--role", type=_ROLE, help="What the account may do (README: who may do what); default: user for a "
              "new account, an existing one keeps its role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_context
def web_user_add(ctx: click.Context, name: str, accounts: Path | None, role: str | None,
                 password_stdin: bool) -> None:
    """Add user NAME to the accounts file, or set their password (argon2id hash; asked twice, not echoed)."""
    accounts = _accounts_file(ctx, accounts)
    from httpov.web.auth import add_user, check_user_name, load_accounts

    if name not in load_accounts(accounts):
        check_user_name(name)  # before asking for a password
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    action = "account.password" if name in load_accounts(accounts) else "account.add"
    with _audit(ctx, action, f"{name} ({role})" if role else name):
        new = add_user(accounts, name, password, role)
    now = load_accounts(accounts)[name].role
    click.echo(f"{'added' if new else 'changed the password of'} {shown(name)} ({now}) in {accounts}"
               + ("" if new else f": {shown(name)}'s signed-in sessions end"))


@web_user.command("list")
@_ACCOUNTS
@click.pass_context
def web_user_list(ctx: click.Context, accounts: Path | None) -> None:
    """The accounts and their roles (no hashes); names from before the one name rule are marked for a rename."""
    accounts = _accounts_file(ctx, accounts)
    from httpov.access import NAME_RULE
    from httpov.web.auth import load_accounts, needs_rename

    found = load_accounts(accounts)
    if not found:
        click.echo(f"no account in {accounts}: `httpov web-user add NAME --role admin` makes one")
    for name, account in sorted(found.items()):
        flag = f"  needs a rename ({NAME_RULE}): it signs in but cannot own jobs" if needs_rename(name) else ""
        click.echo(f"{shown(name):<24} {account.role}{flag}")


@web_user.command("role")
@click.argument("name")
@click.argument("role", type=_ROLE)
@_ACCOUNTS
@click.pass_context
def web_user_role(ctx: click.Context, name: str, role: str, accounts: Path | None) -> None:
    """Give account NAME another ROLE, keeping its password; its signed-in sessions end."""
    accounts = _accounts_file(ctx, accounts)
    from httpov.web.auth import set_role

    with _audit(ctx, "account.role", f"{name} -> {role}"):
        old = set_role(accounts, name, role)
    click.echo(f"{shown(name)}: {old} -> {role} in {accounts}: {shown(name)}'s signed-in sessions end")


@web_user.command("remove")
@click.argument("name")
@_ACCOUNTS
@click.pass_context
def web_user_remove(ctx: click.Context, name: str, accounts: Path | None) -> None:
    """Remove account NAME; its signed-in sessions end (its jobs stay, owned by the name)."""
    accounts = _accounts_file(ctx, accounts)
    from httpov.web.auth import remove_user

    with _audit(ctx, "account.remove", name):
        remove_user(accounts, name)
    click.echo(f"removed {shown(name)} from {accounts}: {shown(name)}'s signed-in sessions end")


@cli.group("web-token")
def web_token() -> None:
    """API tokens of `httpov web` accounts: a script sends `Authorization: Bearer TOKEN` and acts as the account."""


def _tokens(ctx: click.Context):
    from httpov.web.tokens import Tokens

    store = _client(ctx).store
    return Tokens(store.r, store.p)


@web_token.command("add")
@click.argument("name")
@_ACCOUNTS
@click.option("--label", default="", help="What the token is for (the script, the machine it lives on).")
@click.pass_context
def web_token_add(ctx: click.Context, name: str, accounts: Path | None, label: str) -> None:
    """Make an API token for account NAME and print it, this once: only its digest is kept."""
    _need_web_extra()
    from httpov.web.auth import read_accounts

    accounts = accounts or ctx.obj.web_accounts
    with _audit(ctx, "token.add", f"for {name}") as entry:
        if name not in read_accounts(accounts):
            raise BadInputError(f"{shown(name)} is not an account in {accounts}: tokens belong to accounts",
                                hint=f"add it first: httpov web-user add {shown(name)} --accounts {accounts}")
        token, made = _tokens(ctx).create(name, label)
        entry.done = made.described
    click.echo(f"token {made.id} for {shown(name)}{f' ({shown(made.label)})' if made.label else ''}; shown only "
               "this once, keep it secret:", err=True)
    click.echo(token)


@web_token.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def web_token_list(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Every account's API tokens, or NAME's: id, account, label, created, last used (never the token)."""
    import json

    _need_web_extra()
    from httpov.web.tokens import when

    found = _tokens(ctx).list(name)
    if as_json:
        click.echo(json.dumps([t.to_json() for t in found], indent=2))
        return
    if not found:
        click.echo(f"no API token{f' of {shown(name)}' if name else ''}")
        return
    rows = [("ID", "ACCOUNT", "LABEL", "CREATED", "LAST USED")]
    rows += [(t.id, shown(t.account), shown(t.label) or "-", when(t.created), when(t.last_used)) for t in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@web_token.command("remove")
@click.argument("token_id", metavar="ID")
@click.pass_context
def web_token_remove(ctx: click.Context, token_id: str) -> None:
    """Revoke the API token ID (as `list` shows it): it stops working at once, in every `httpov web`."""
    _need_web_extra()
    tokens = _tokens(ctx)
    with _audit(ctx, "token.remove", f"token {token_id}") as entry:
        found = tokens.find(token_id)
        entry.detail = found.described
        tokens.revoke(found)
    click.echo(f"token {found.id} of {shown(found.account)} revoked")


@cli.command()
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("--workers", type=int, help="Render processes on this machine (default: 4 per core).")
@click.option("--frames", type=int, help="Frames in the animation (sets Final_Frame); default: the ini's range.")
@click.option("--count", type=int, help="Frames per batch, at most; default: adaptive, as for submit.")
@click.option("--slices", metavar="N|auto", help="Split each frame into this many row slices, stitched afterwards "
              "(auto: sized by the render processes).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Default: ./out/<name>/")
@click.pass_context
def render(ctx: click.Context, scene: Path, workers: int | None, frames: int | None, count: int | None,
           slices: str | None, output: Path | None) -> None:
    """Render SCENE on this machine alone: Redis, render nodes and all, started and stopped for you."""
    from httpov.local_farm import render_locally
    from httpov.terminal import JobProgress

    options = _submit_options(ctx.obj, frames=frames, count=count, slices=slices)
    with JobProgress() as progress:
        result = render_locally(ctx.obj, scene, options, workers=workers, output=output, on_progress=progress,
                                say=click.echo, on_outage=_outage)
    click.echo(f"{len(result)} frame(s) rendered into {result[0].parent if result else output}")


@cli.command()
@click.argument("jobs", nargs=-1, required=True)
@click.pass_context
def cancel(ctx: click.Context, jobs: tuple[str, ...]) -> None:
    """Drop JOBS' queued batches and kill their running povrays."""
    client = _client(ctx)
    _each(ctx, jobs, lambda job: (client.cancel(job), f"job {shown(job)} cancelled")[1])


@cli.command()
@click.argument("jobs", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, jobs: tuple[str, ...]) -> None:
    """Stop handing out JOBS' batches (running ones finish)."""
    client = _client(ctx)
    _each(ctx, jobs, lambda job: (client.pause(job), f"job {shown(job)} paused")[1])


@cli.command()
@click.argument("jobs", nargs=-1, required=True)
@click.pass_context
def resume(ctx: click.Context, jobs: tuple[str, ...]) -> None:
    """Hand out paused JOBS' batches again."""
    client = _client(ctx)
    _each(ctx, jobs, lambda job: f"job {shown(job)} resumed ({client.resume(job)} batch(es) requeued)")


def _each(ctx: click.Context, jobs: tuple[str, ...], act) -> None:
    """Do `act` (answering what to say) for each job; one failing does not stop the others, and the exit code is
    the first failure's."""
    failed: HttpovError | None = None
    for job in jobs:
        try:
            click.echo(act(job))
        except HttpovError as exc:
            said = exc.said(flag) if isinstance(exc, OptionError) else str(exc)  # fields as the flags typed
            click.echo(f"httpov: error: {shown(said)}", err=True)
            if exc.hint:
                click.echo(f"hint: {shown(exc.hint)}", err=True)
            failed = failed or exc
    if failed is not None:
        ctx.exit(failed.exit_code)


@cli.command()
@click.argument("job")
@click.option("--frames", "frames", help="Render these frames again, done or not: 5-9, or 7 (a sliced frame's "
              "slices); the new frames replace the old ones.")
@click.pass_context
def retry(ctx: click.Context, job: str, frames: str | None) -> None:
    """Re-render only JOB's failed or missing batches (or, with --frames, those frames)."""
    from httpov.plan import parse_frame_range

    n = _client(ctx).retry(job, parse_frame_range(frames) if frames is not None else None)
    click.echo(f"job {job}: {n} batch(es) queued again")


@cli.command()
@click.argument("jobs", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Cancel a live or paused job first (else it is refused).")
@click.pass_context
def delete(ctx: click.Context, jobs: tuple[str, ...], force: bool) -> None:
    """Delete finished JOBS: their Redis keys, stored results and logs, and their scene once no job uses it."""
    client = _client(ctx)

    def delete_one(job: str) -> str:
        done = client.delete(job, force=force)
        return (f"job {shown(job)} deleted ({done.state}): {done.objects} stored object(s), {done.redis_keys} Redis "
                f"key(s), {'scene deleted' if done.scene_deleted else 'scene kept'}")
    _each(ctx, jobs, delete_one)


@cli.command()
@click.option("--older-than", "older_than", required=True, help="Age since a job finished: 30d, 12h, 90m, 2w.")
@click.option("--state", "states", default="done,failed,cancelled", show_default=True,
              help="Comma-separated finished states to prune.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@click.pass_context
def prune(ctx: click.Context, older_than: str, states: str, dry_run: bool) -> None:
    """Delete every finished job older than --older-than (as `httpov delete` does)."""
    from httpov.retention import parse_age

    chosen = tuple(state.strip() for state in states.split(",") if state.strip())
    found = _client(ctx).prune(parse_age(older_than), chosen, dry_run=dry_run)
    for job in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.finished)) if job.finished else "-"
        click.echo(f"{'would delete' if dry_run else 'deleted'} {shown(job.job_id)} {shown(job.name)[:30]} "
                   f"{job.state} finished {when}")
    click.echo(f"{len(found)} job(s) {'would be ' if dry_run else ''}deleted")


@cli.command()
@click.pass_context
def metrics(ctx: click.Context) -> None:
    """The farm's Prometheus metrics in the text exposition format (a scrape without `httpov web`)."""
    click.echo(_client(ctx).metrics().decode(), nl=False)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def nodes(ctx: click.Context, as_json: bool) -> None:
    """The render nodes: up, draining, stopped or lost, host, processes, cores, versions, what each renders, its
    last hour. `httpov nodes drain NODE` (admins) lets a node finish its batches and exit."""
    if ctx.invoked_subcommand is not None:
        return
    found = _client(ctx).nodes()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no render node seen in the last hour: start one with `celery -A httpov worker`")
        return
    now = time.time()
    click.echo(f"{'NODE':<28}{'STATE':<10}{'HOST':<18}{'PROCS':>6}{'CORES':>6}  {'POVRAY':<20}{'HTTPOV':<9}"
               f"{'DONE/1H':>8}{'FAILED/1H':>10}{'HUNG/1H':>8}{'SEEN':>8}  RENDERING")
    for n in found:
        rendering = ", ".join(f"{r['job']} {r['batch']} ({now - (r['since'] or now):.0f}s)" for r in n["rendering"])
        click.echo(f"{shown(n['node'])[:27]:<28}{n['state']:<10}{shown(n['host'] or '?')[:17]:<18}"
                   f"{n['processes'] or '?':>6}{n['cores'] or '?':>6}  {shown(n['povray'] or '?')[:19]:<20}"
                   f"{shown(n['httpov'] or '?')[:8]:<9}{n['done_last_hour']:>8}{n['failed_last_hour']:>10}"
                   f"{n.get('hung_last_hour', 0):>8}"
                   f"{now - n['last_seen']:>7.0f}s  {shown(rendering) or '-'}")
    for n in found:  # why a node takes no batch, or fails those it takes
        if n.get("fault"):
            click.echo(f"node {shown(n['node'])}: {shown(n['fault'])}")
        if n.get("storage_error"):
            click.echo(f"node {shown(n['node'])}: storage check failed: {shown(n['storage_error'])}")
        if n.get("waits_off"):
            click.echo(f"node {shown(n['node'])}: povray runs without quick waits: {shown(n['waits_off'])}")
        if n.get("last_error") and n.get("failed_last_hour"):
            click.echo(f"node {shown(n['node'])}: last failed batch: {shown(n['last_error'])}")


@nodes.command("drain")
@click.argument("node")
@click.pass_context
def drain_node(ctx: click.Context, node: str) -> None:
    """Let NODE (its full name, or the part before '@') take no new batch, finish those it renders and exit 0
    (admins). Its batches are not requeued: they finish there; the other nodes take the rest."""
    found = _client(ctx).drain_node(node)
    click.echo(f"node {shown(found)} is draining: it finishes the batches it renders, then exits "
               "(`httpov nodes` shows it draining, then stopped)")


@cli.command()
@click.argument("job")
@click.option("--frame", type=int, help="Only the batches holding this frame (every slice of a sliced frame).")
@click.option("--failed", is_flag=True, help="Only the logs of failed attempts.")
@click.pass_context
def logs(ctx: click.Context, job: str, frame: int | None, failed: bool) -> None:
    """povray's log of each of JOB's batches, failed attempts included, downloading only those batches."""
    found = _client(ctx).logs(job, frame=frame, failed=failed)
    if not found:
        click.echo("no log: " + ("no batch failed" if failed else "no batch rendered or failed yet"), err=True)
    for entry in found:
        click.echo(f"== {entry.batch} ({entry.label}): {entry.kind}"
                   + (f": {shown(entry.error)}" if entry.error else "") + " ==")
        for line in entry.text.splitlines():
            click.echo(shown(line))


@cli.command()
@click.argument("job")
@click.argument("priority", type=int)
@click.pass_context
def priority(ctx: click.Context, job: str, priority: int) -> None:
    """Set JOB's PRIORITY (0 lowest to 9 highest): its batches still queued move to it."""
    moved = _client(ctx).set_priority(job, priority)
    click.echo(f"job {shown(job)}: priority {priority}, {moved} queued batch(es) moved")


@cli.group("limits", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """Per-user limits (admins): list them; `limits set NAME|*` and `limits clear NAME` change them."""
    if ctx.invoked_subcommand is not None:
        return
    found = _client(ctx).list_limits()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    columns = ("max_processes", "max_jobs", "max_priority", "weight")
    click.echo(f"{'USER':<28}{'PROCESSES':>10}{'JOBS':>6}{'PRIORITY':>9}{'WEIGHT':>8}")

    def row(name: str, entry: dict[str, Any]) -> str:
        cells = ["-" if entry.get(c) is None else ("no limit" if entry[c] == 0 and c in columns[:2] else entry[c])
                 for c in columns]
        return f"{shown(name)[:27]:<28}{cells[0]!s:>10}{cells[1]!s:>6}{cells[2]!s:>9}{cells[3]!s:>8}"
    click.echo(row("(farm settings)", found["defaults"]))
    for name, entry in found["users"].items():
        click.echo(row(name, entry))
    click.echo("('-': from the * entry, else the farm settings; 'no limit': 0)")


@limits.command("set")
@click.argument("name")
@click.option("--max-processes", type=int, help="Render processes on the user's batches at once (0: no limit).")
@click.option("--max-jobs", type=int, help="Live jobs the user may have at once (0: no limit).")
@click.option("--max-priority", type=int, help="Highest priority the user may give a job (0-9).")
@click.option("--weight", type=float, help="The user's fair share relative to others' (default 1).")
@click.pass_context
def limits_set(ctx: click.Context, name: str, max_processes: int | None, max_jobs: int | None,
               max_priority: int | None, weight: float | None) -> None:
    """Set some of NAME's limits (NAME `*`: everyone without an entry of their own); the others stay."""
    entry = _client(ctx).set_limits(name, max_processes=max_processes, max_jobs=max_jobs, max_priority=max_priority,
                                    weight=weight)
    said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in entry.items())
    click.echo(f"{shown(name)}: {said or 'no limit set'}")


@limits.command("clear")
@click.argument("name")
@click.pass_context
def limits_clear(ctx: click.Context, name: str) -> None:
    """Remove NAME's entry: the * entry and the farm settings apply to them again."""
    had = _client(ctx).clear_limits(name)
    click.echo(f"{shown(name)}: " + ("entry removed" if had else "had no entry"))


@cli.command()
@click.option("--job", help="Only this job's events.")
@click.option("--after", metavar="ID", help="Only the events after this event id (the first --limit of them).")
@click.option("--limit", type=click.IntRange(min=1), help="The newest N events (default 50), newest last.")
@click.option("--follow", is_flag=True, help="Then print each new event as it comes, until interrupted.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line (id, at, kind, job, owner, "
              "detail).")
@click.pass_context
def events(ctx: click.Context, job: str | None, after: str | None, limit: int | None, follow: bool,
           as_json: bool) -> None:
    """Job events in order: submitted, started, batch-failed, paused, resumed, retried, done, failed, cancelled,
    deleted (kept HTTPOV_KEEP_DAYS days)."""
    from httpov.events import DEFAULT_LIMIT, MAX_LIMIT, check_id

    if limit is not None and limit > MAX_LIMIT:
        raise BadInputError(f"--limit {limit}: at most {MAX_LIMIT}")
    if after is not None:
        check_id(after)
    from httpov.farm import event_stream

    shown_any = False
    for event in event_stream(_client(ctx), job, after, limit or DEFAULT_LIMIT, follow):
        if event is None:
            continue
        shown_any = True
        if as_json:
            click.echo(json.dumps(event.to_json()))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
            click.echo(f"{when}  {event.kind:<12}  {shown(event.job)}  {shown(event.owner) or '-'}"
                       f"{'  ' + shown(event.detail) if event.detail else ''}")
    if not shown_any and not as_json and not follow:
        click.echo("no event matches" if job or after else "no job event yet")


@cli.command()
@click.option("--user", help="Only what this account (or operator) did.")
@click.option("--job", help="Only what was done to this job.")
@click.option("--since", help="Only the records of this last while: 7d, 12h, 90m, 2w.")
@click.option("--limit", type=click.IntRange(min=1), help="The newest N matching records, newest last (default 50).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, newest last.")
@click.pass_context
def audit(ctx: click.Context, user: str | None, job: str | None, since: str | None, limit: int | None,
          as_json: bool) -> None:
    """The audit log: who submitted, controlled, deleted or pruned which job and who changed which token, account or
    limits, when, from where, done or refused (kept HTTPOV_KEEP_DAYS days)."""
    from httpov.audit import DEFAULT_LIMIT, MAX_LIMIT
    from httpov.retention import parse_age

    if limit is not None and limit > MAX_LIMIT:
        raise BadInputError(f"--limit {limit}: at most {MAX_LIMIT}")
    try:
        age = parse_age(since) if since is not None else None
    except BadInputError:
        raise BadInputError(f"--since {shown(repr(since))}: give an age such as 7d, 12h, 90m or 2w") from None
    found = _client(ctx).audit.records(user=user, job=job, since=age, limit=limit or DEFAULT_LIMIT)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in found], indent=2))
        return
    if not found:
        filtered = user is not None or job is not None or since is not None
        click.echo("no record matches" if filtered else "the audit log is empty")
        return
    rows = [("WHEN", "WHO", "FROM", "ACTION", "JOB", "OUTCOME")]
    rows += [(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.at)), shown(r.who), shown(r.address) or "-",
              shown(r.action), shown(r.job) or "-", r.outcome) for r in found]
    details = ["DETAIL"] + [shown(r.detail) + (f"{'; ' if r.detail else ''}why: {shown(r.reason)}" if r.reason else "")
                            for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row, detail in zip(rows, details, strict=True):
        click.echo("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=True)), detail]).rstrip())


@cli.command("config")
@click.pass_context
def config_command(ctx: click.Context) -> None:
    """Print the settings in effect and where each came from (environment, config file, default); passwords
    in URLs are masked."""
    from httpov.settings import SECRETS, default_config_path, env_name, masked, resolve, unknown_variables

    for warning in unknown_variables():  # HTTPOV_STORGE would otherwise be ignored in silence
        click.echo(f"httpov: warning: {warning}", err=True)
    found = resolve()
    if found.config is None:
        click.echo(f"config file: none ({shown(str(default_config_path()))} does not exist)")
    else:
        click.echo(f"config file: {shown(str(found.config))}")
    wide = max(len(name) for name in found.origins) + 2
    for name, origin in found.origins.items():
        value = getattr(found.settings, name)
        value = "none" if value is None else masked(value, secret=name in SECRETS)
        click.echo(f"{name:<{wide}}{env_name(name):<{wide + 7}}{shown(value):<44} {shown(origin)}")


def _outage(message: str) -> None:
    """Said once per Redis outage by the commands that wait it out (HTTPOV_OUTAGE_SECONDS)."""
    # on a terminal, below the progress line it interrupts; off one, lines are whole already
    click.echo(f"{chr(10) if sys.stderr.isatty() else ''}httpov: {message}", err=True)


def _counter(what: str):
    """A (done, total) progress callback: 'what 3/10' (httpov.terminal.Counter)."""
    from httpov.terminal import Counter

    return Counter(what)


def main() -> None:
    cli(prog_name="httpov")


if __name__ == "__main__":
    main()
