"""What the CLI prints about jobs, through rich: the status table, the watch view, the one-line progress of a
waiting command and download counters. On a terminal they are coloured and redrawn in place; off one (a pipe, a
file, a test's runner) they are plain text with no escape codes, printed only when something changed."""
from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from httpov.eta import duration
from httpov.states import JobState
from httpov.text import shown
from httpov.view import JobView

#: Off a terminal nothing is wrapped or cut: a line is as long as it is (a terminal's own width applies on one).
PLAIN_WIDTH = 1000


def console(file: IO[str] | None = None, err: bool = False) -> Console:
    """A console on `file` (default: the current stdout, or stderr). It never reads markup, emoji codes or
    highlights: job names and povray's messages print as they are (after httpov.text.shown), `[bold]` included."""
    file = file or (sys.stderr if err else sys.stdout)
    tty = file.isatty()
    return Console(file=file, markup=False, emoji=False, highlight=False, width=None if tty else PLAIN_WIDTH,
                   force_terminal=None if tty else False)


def bar(view: JobView, width: int) -> Text:
    """`[###xx....]`: frames done, failed, still to come (coloured on a terminal)."""
    total = max(1, view.frames_total)
    done = int(width * view.frames_done / total)
    failed = min(width - done, int(round(width * view.frames_failed / total)))
    return Text.assemble("[", ("#" * done, "green"), ("x" * failed, "red"), ("." * (width - done - failed), "dim"), "]")


def status_table(views: list[JobView]) -> Table:
    """Every job on one row: `httpov status`."""
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    for name, justify in (("JOB", "left"), ("NAME", "left"), ("OWNER", "left"), ("PRI", "right"), ("STATE", "left"),
                          ("PROGRESS", "left"), ("FRAMES", "right"), ("FAILED", "right"), ("FR/S", "right"),
                          ("ETA", "right"), ("CREATED", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for j in views:
        progress = bar(j, 10).append(f" {j.percent:>3}%")
        table.add_row(Text(shown(j.id)), Text(shown(j.name)[:17]), Text(shown(j.user or "-")[:16]), str(j.priority),
                      Text(j.state, style=_state_style(j.state)),
                      progress, f"{j.frames_done}/{j.frames_total}", str(j.frames_failed), f"{j.rate_recent:.2f}",
                      j.eta_text, time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created)))
    return table


def job_panel(j: JobView) -> RenderableType:
    """One job in detail: progress, rate and ETA, who renders what, failures with povray's log lines."""
    parts: list[RenderableType] = [
        Text.assemble(f"job {shown(j.id)} ({shown(j.name)}): ", (j.state, _state_style(j.state)),
                      f", {duration(j.elapsed)} elapsed"),
        Text.assemble(bar(j, 40), f" {j.percent}%  {j.frames_done}/{j.frames_total} frames done, "
                      f"{j.frames_failed} failed, {j.frames_running} rendering; "
                      f"batches {j.batches_done}/{j.batches_total}"),
        Text(_eta_line(j)),
        Text(shown(f"owner {j.user or '-'}") + (shown(f", submitted by {j.submitted_by}")
                                                 + (" (operator)" if j.submitted_by_operator else " (admin)")
                                                 if j.submitted_by and j.submitted_by != j.user else "")),
    ]
    if j.prepass:
        parts.append(Text(j.prepass.text))
    if j.pool:
        parts.append(Text(shown(f"pool {j.pool}") + (": no live render node is in it, the job waits until one joins"
                                                       if j.pool_live is False else "")))
    if j.versions or j.povray:
        pinned = "any povray" if j.any_povray else f"povray {j.povray or 'of the first node'}"
        parts.append(Text(shown(f"versions: renders with {pinned}")))
        parts.extend(Text(shown(f"  rendered by povray {v['povray']} with httpov {v['httpov']}: {v['batches']} "
                                "batch(es)")) for v in j.versions)
    if j.nodes:
        nodes = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
        nodes.add_column("  NODE", no_wrap=True)
        nodes.add_column("BATCHES", justify="right")
        nodes.add_column("RENDERED", justify="right")
        nodes.add_column("RENDERING")
        for node, n in j.nodes.items():
            nodes.add_row(Text("  " + shown(node)[:29]), str(n.batches_done), n.work or f"{n.frames_done:g}",
                          Text(shown(", ".join(n.running)) or "-"))
        parts.append(nodes)
    for event in j.history:  # what was rendered again (retry --frames), which batch hung, what submit warned of
        warning = "warning: " if event.get("kind") == "warning" else ""
        parts.append(Text(f"  {time.strftime('%Y-%m-%d %H:%M', time.localtime(event['at']))} "
                          f"{warning}{shown(event['what'])}",
                          style="yellow" if event.get("kind") in ("hang", "warning") else ""))
    parts.extend(Text(shown(note), style="yellow") for note in j.notes)
    for f in j.failure_groups():
        retried = not f.final and not j.ended  # a finished job retries nothing
        parts.append(Text.assemble("  ", ("will retry" if retried else "failed", "yellow" if retried else "red"),
                                   f": {shown(f.what)} on {shown(f.where)}: {shown(f.error)}"))
        parts.extend(Text(f"    | {shown(line)}", style="dim") for line in f.lines[-8:])
    return Group(*parts)


def job_text(j: JobView) -> str:
    """job_panel as plain text (no escape codes), as it prints off a terminal."""
    out = Console(width=PLAIN_WIDTH, force_terminal=False, markup=False, emoji=False, highlight=False,
                  color_system=None)
    with out.capture() as captured:
        out.print(job_panel(j))
    return "\n".join(line.rstrip() for line in captured.get().rstrip("\n").split("\n"))


def _eta_line(j: JobView) -> str:
    line = f"rate {j.rate_recent:.2f} frames/s"
    if j.frame_seconds is not None:
        line += f", {j.frame_seconds:.2f} s per frame"
    line += f", ETA {j.eta_text}"
    if j.eta_at and j.state in (JobState.QUEUED, JobState.RUNNING):
        line += time.strftime(" (at %H:%M:%S)", time.localtime(j.eta_at))
    elif j.stalled:
        line += " (no render node is taking this job's batches now)"
    return line


def _state_style(state: str) -> str:
    colours = {JobState.DONE: "green", JobState.FAILED: "red", JobState.CANCELLED: "red", JobState.PAUSED: "yellow"}
    return colours.get(state, "blue")  # type: ignore[call-overload]


class JobProgress:
    """The one-line progress of a waiting command (`submit --wait`, `render`) on stderr, told each JobView.

    On a terminal, a rich progress bar redrawn in place (redrawn when told, by no thread of its own); off one, a
    plain line each time the state or a frame count changed. Use it as a context manager: the bar is closed even
    when the wait ends in an error."""

    def __init__(self, out: Console | None = None) -> None:
        self.out = out or console(err=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last: tuple[Any, ...] | None = None

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, view: JobView) -> None:
        state = view.state + (f", {view.prepass.text}" if view.prepass else "")
        fields: dict[str, Any] = {"failed": view.frames_failed, "rate": view.rate_recent, "eta": view.eta_text,
                                  "state": state}
        if not self.out.is_terminal:
            changed = (state, view.frames_done, view.frames_failed)
            if changed != self._last:
                self.out.print(Text.assemble(bar(view, 30), f" {view.frames_done}/{view.frames_total} frames, "
                                             f"{view.frames_failed} failed, {view.rate_recent:.2f} fr/s, "
                                             f"ETA {view.eta_text}, {state}"), soft_wrap=True)
            self._last = changed
            return
        if self._progress is None:
            self._progress = Progress(
                BarColumn(bar_width=30), MofNCompleteColumn(),
                TextColumn("frames, {task.fields[failed]} failed, {task.fields[rate]:.2f} fr/s, "
                           "ETA {task.fields[eta]}, {task.fields[state]}", markup=False),
                console=self.out, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
            self._progress.start()
            self._task = self._progress.add_task("", total=max(1, view.frames_total), **fields)
        assert self._task is not None
        self._progress.update(self._task, completed=view.frames_done, **fields)
        self._progress.refresh()
        if view.ended:
            self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def note(self, message: str) -> None:
        """A line above the bar (a Redis outage notice): printed, not drawn over."""
        self.out.print(Text(shown(message)), soft_wrap=True)


class Counter:
    """A (done, total) progress callback: `what 3/10`. A bar on a terminal; off one, only the final count."""

    def __init__(self, what: str, out: Console | None = None) -> None:
        self.what = shown(what)  # a file name may be in it
        self.out = out or console(err=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if not self.out.is_terminal:
            if done == total:
                self.out.print(Text(f"{self.what} {done}/{total}"), soft_wrap=True)
            return
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                      console=self.out, auto_refresh=False, redirect_stdout=False,
                                      redirect_stderr=False)
            self._progress.start()
            self._task = self._progress.add_task(self.what, total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, total=total)
        self._progress.refresh()
        if done >= total:
            self._progress.stop()
            self._progress = None


class Transfer:
    """A (bytes done, bytes in all or None) progress callback of an upload or download (`httpov --server`): a bar
    with the size and speed on a terminal, nothing off one. It closes itself when the last byte is told."""

    def __init__(self, what: str, out: Console | None = None) -> None:
        self.what = shown(what)
        self.out = out or console(err=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._closed = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.out.is_terminal or self._closed:
            return
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), console=self.out, auto_refresh=False,
                                      redirect_stdout=False, redirect_stderr=False)
            self._progress.start()
            self._task = self._progress.add_task(self.what, total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, total=total)
        self._progress.refresh()
        if total is not None and done >= total:
            self._progress.stop()
            self._progress, self._closed = None, True


def watch_live(out: Console) -> Live:
    """The in-place view `httpov watch` redraws on a terminal (redrawn when told, by no thread of its own)."""
    return Live(console=out, auto_refresh=False, vertical_overflow="visible", redirect_stdout=False,
                redirect_stderr=False)
