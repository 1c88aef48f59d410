"""The `httpov` command: parse options, make one library call, print the result."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from httpov.errors import HttpovError
from httpov.settings import Settings


class _Group(click.Group):
    """Turns httpov's errors into one line on stderr and the error's exit code (see README: exit codes)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HttpovError as exc:
            click.echo(f"httpov: error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)


def _client(ctx: click.Context):
    from httpov.app import make_app
    from httpov.client import Client

    settings: Settings = ctx.obj
    return Client(settings, make_app(settings))


@click.group(cls=_Group)
@click.version_option(package_name="httpov")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Distributed POV-Ray rendering: submit scenes, render nodes run `celery -A httpov worker`."""
    ctx.obj = Settings.from_env()


@cli.command()
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("--frames", type=int, help="Frames in the animation (sets Final_Frame); default: the ini's range.")
@click.option("--count", type=int, help="Frames per batch (one task each); default: a few batches per node.")
@click.option("--slices", type=int, help="Split each frame into this many row slices, stitched afterwards.")
@click.option("--slice-rows", type=int, help="Rows per slice, instead of --slices.")
@click.option("--name", help="Job name (default: the scene's name).")
@click.option("--priority", type=int, default=5, show_default=True, help="0 (lowest) to 9 (highest).")
@click.option("--wait", is_flag=True, help="Show progress until the job ends; exit 0 only if every frame rendered.")
@click.pass_context
def submit(ctx: click.Context, scene: Path, frames: int | None, count: int | None, slices: int | None,
           slice_rows: int | None, name: str | None, priority: int, wait: bool) -> None:
    """Queue SCENE (a .zip, a folder, or a .ini/.pov file) for rendering."""
    client = _client(ctx)
    sub = client.submit(scene, name=name, frames=frames, count=count, slices=slices, slice_rows=slice_rows,
                        priority=priority)
    click.echo(f"job {sub.describe()}")
    click.echo(f"scene {'uploaded' if sub.uploaded else 'already stored'} as {sub.spec.scene_key}")
    for item in sub.ignored:
        click.echo(f"warning: ignored ini option {item!r} (httpov sets it, or it is not allowed)", err=True)
    if wait:
        client.wait(sub.spec.id, _ProgressLine())


@cli.command()
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object for JOB, else a list).")
@click.pass_context
def status(ctx: click.Context, job: str | None, as_json: bool) -> None:
    """All jobs as a table, or one job in detail."""
    jobs = _client(ctx).status(job)
    if as_json:
        click.echo(json.dumps(jobs[0] if job else jobs, indent=2))
        return
    if job:
        _show_job(jobs[0])
        return
    click.echo(f"{'JOB':<12}{'NAME':<20}{'STATE':<11}{'FRAMES':>13}{'FAILED':>8}  CREATED")
    for j in jobs:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(j["created"]))
        frames = f"{j['frames_done']}/{j['frames_total']}"
        click.echo(f"{j['id']:<12}{j['name'][:19]:<20}{j['state']:<11}{frames:>13}{j['frames_failed']:>8}  {created}")


def _show_job(j: dict[str, Any]) -> None:
    click.echo(f"job {j['id']} ({j['name']}): {j['state']}")
    click.echo(f"  frames {j['frames_done']}/{j['frames_total']} done, {j['frames_failed']} failed; "
               f"batches {j['batches_done']}/{j['batches_total']}")
    for batch, node in sorted(j["batches_running"].items()):
        click.echo(f"  running {batch} on {node}")
    for line in j["errors"]:
        click.echo(f"  | {line}")


@cli.command()
@click.argument("job")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="Folder for frames and logs.")
@click.pass_context
def fetch(ctx: click.Context, job: str, output: Path) -> None:
    """Download JOB's rendered frames (PNG) and render logs into OUTPUT."""
    client = _client(ctx)
    images = client.fetch(job, output, _file_progress)
    state = client.store.state(job)
    click.echo(f"{len(images)} frame(s) in {output}, logs in {output / 'logs'} (job {state})")


@cli.command()
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("--workers", type=int, help="Render processes on this machine (default: twice the cores).")
@click.option("--frames", type=int)
@click.option("--count", type=int)
@click.option("--slices", type=int)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Default: ./out/<name>/")
@click.pass_context
def render(ctx: click.Context, scene: Path, workers: int | None, frames: int | None, count: int | None,
           slices: int | None, output: Path | None) -> None:
    """Render SCENE on this machine alone: Redis, render nodes and all, started and stopped for you."""
    from httpov.local import render_locally

    result = render_locally(ctx.obj, scene, workers=workers, frames=frames, count=count, slices=slices,
                            output=output, on_progress=_ProgressLine(), say=click.echo)
    click.echo(f"{len(result)} frame(s) rendered into {result[0].parent if result else output}")


@cli.command()
@click.argument("job")
@click.pass_context
def cancel(ctx: click.Context, job: str) -> None:
    """Drop JOB's queued batches and kill its running povrays."""
    _client(ctx).cancel(job)
    click.echo(f"job {job} cancelled")


@cli.command()
@click.argument("job")
@click.pass_context
def pause(ctx: click.Context, job: str) -> None:
    """Stop handing out JOB's batches (running ones finish)."""
    _client(ctx).pause(job)
    click.echo(f"job {job} paused")


@cli.command()
@click.argument("job")
@click.pass_context
def resume(ctx: click.Context, job: str) -> None:
    """Hand out a paused JOB's batches again."""
    n = _client(ctx).resume(job)
    click.echo(f"job {job} resumed ({n} batch(es) requeued)")


@cli.command()
@click.argument("job")
@click.pass_context
def retry(ctx: click.Context, job: str) -> None:
    """Re-render only JOB's failed or missing batches."""
    n = _client(ctx).retry(job)
    click.echo(f"job {job}: {n} batch(es) queued again")


class _ProgressLine:
    """A one-line progress bar on stderr: frames done/total, failures, rate, ETA."""

    def __call__(self, p: dict[str, Any]) -> None:
        total = max(1, p["frames_total"])
        width = 30
        filled = int(width * p["frames_done"] / total)
        eta = "?"
        if p["rate"] > 0 and p["state"] not in ("done", "failed", "cancelled"):
            eta = f"{(p['frames_total'] - p['frames_done'] - p['frames_failed']) / p['rate']:.0f}s"
        line = (f"\r[{'#' * filled}{'.' * (width - filled)}] {p['frames_done']}/{p['frames_total']} frames, "
                f"{p['frames_failed']} failed, {p['rate']:.2f} fr/s, ETA {eta}, {p['state']}   ")
        click.echo(line, nl=p["state"] in ("done", "failed", "cancelled"), err=True)


def _file_progress(done: int, total: int) -> None:
    click.echo(f"\rdownloading {done}/{total}", nl=done == total, err=True)


def main() -> None:
    cli(prog_name="httpov")


if __name__ == "__main__":
    sys.exit(main())
