"""The confirmation the pages ask before a destructive action (delete or cancel a job, revoke a token): what it names,
what goes and what stays, and the check that a POST carries it."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from httpov.access import Action
from httpov.errors import BadInputError
from httpov.view import JobView
from httpov.web.tokens import Token

#: The job actions a page confirms first, and what httpov.access asks of whoever confirms them.
DESTRUCTIVE = {"delete": Action.DELETE, "cancel": Action.CONTROL}
#: The form field a confirmed POST carries: the job's (or token's) id, as the confirmation named it.
FIELD = "confirm"
_LIVE = ("queued", "running", "paused")


@dataclass
class Confirmation:
    """One destructive action on one job (or token, its `target`): the question, what goes and what stays (each a
    (what, count or None) pair: a page keeps a live job's counts up to date), and the button that does it;
    `blocked` says why the job's state does not allow it (then there is no button, only the reason)."""

    action: str
    target: str
    name: str
    state: str
    question: str
    button: str
    goes: list[tuple[str, Count | None]] = field(default_factory=list)
    stays: list[tuple[str, Count | None]] = field(default_factory=list)
    blocked: str = ""


@dataclass
class Count:
    """A number in a confirmation, and the name the page's script knows it by (live.js, confirmCounts)."""

    key: str
    value: int


def counts(view: JobView) -> dict[str, int]:
    """The numbers a confirmation names: frames rendered, batches running, batches not yet rendered (queued,
    waiting, or set aside by a pause). live.js's confirmCounts computes the same from the API's job."""
    running = len(view.batches_running)
    return {"frames_done": view.frames_done, "running": running,
            "left": max(view.batches_total - view.batches_done - len(view.batches_failed) - running, 0)}


def confirmation(action: str, view: JobView) -> Confirmation:
    """What the confirmation of `action` ('delete' or 'cancel') says of the job `view` shows."""
    who = f"{view.name} ({view.id})"
    n = {key: Count(key, value) for key, value in counts(view).items()}
    if action == "delete":
        made = Confirmation(action, view.id, view.name, view.state, f"Delete job {who}?", f"Delete job {who}",
                            goes=[("rendered frames, and everything stored for the job in storage (frames, slices, "
                                   "povray logs, the downloads built from them)", n["frames_done"]),
                                  ("its record, batches and history on the farm", None),
                                  ("its scene, unless another job uses the same one", None)],
                            stays=[("nothing: this cannot be undone (download the frames first to keep them)",
                                    None)])
        if view.state in _LIVE:
            made.blocked = (f"job {view.id} is {view.state}: only a job that has ended (done, failed or cancelled) "
                            "is deleted; cancel it first")
        return made
    if action == "cancel":
        made = Confirmation(action, view.id, view.name, view.state, f"Cancel job {who}?", f"Cancel job {who}",
                            goes=[("batches not yet rendered, dropped from the queue", n["left"]),
                                  ("running batches, whose povrays are killed (the frames they were rendering are "
                                   "lost)", n["running"])],
                            stays=[("frames already rendered, kept (download them; Retry renders the rest later)",
                                    n["frames_done"])])
        if view.state not in _LIVE:
            made.blocked = f"job {view.id} is {view.state}: there is nothing to cancel"
        return made
    raise ValueError(f"{action!r} is not a destructive action")


def token_confirmation(token: Token) -> Confirmation:
    """What the confirmation of revoking `token` says."""
    who = f"{token.id} of {token.account}" + (f" ({token.label})" if token.label else "")
    return Confirmation("revoke", token.id, token.label, "", f"Revoke token {who}?", f"Revoke token {token.id}",
                        goes=[(f"the token: every script that sends it is refused from its next request, as "
                               f"{token.account}", None)],
                        stays=[(f"{token.account}'s account, jobs and other tokens; nothing brings this token back "
                                "(make a new one, and give it to the scripts)", None)])


def node_confirmation(node: dict) -> Confirmation:
    """What the confirmation of draining a render node (httpov.nodes.farm_nodes' entry) says."""
    name, running = node["node"], len(node.get("rendering") or [])
    made = Confirmation("drain", name, name, node["state"], f"Drain render node {name}?", f"Drain {name}",
                        goes=[("the node, once the batches it renders are done: it takes no new batch and exits "
                               "(its service manager may start it again)", None)],
                        stays=[("the batches it renders now: they finish there, nothing is requeued", Count(
                            "running", running)),
                               ("every job: the other render nodes take their batches", None)])
    if node["state"] != "up":
        made.blocked = f"render node {name} is {node['state']}: only a node that is up is drained"
    return made


def check_confirmed(action: str, target: str, form: Mapping[str, str], what: str = "job") -> None:
    """BadInputError (400, nothing done) unless the POST of `action` on the job (or token: `what`) `target` carries
    the confirmation naming it: a stray form post, an old link or a script's guess cannot destroy anything."""
    given = form.get(FIELD)
    if given != target:
        said = "lacks" if not given else "has the wrong"
        page = {"job": "the job's page", "node": "the nodes page"}.get(what, "the tokens page")
        raise BadInputError(f"refused: this request to {action} {what} {target} {said} confirmation (the field "
                            f"'{FIELD}' naming the {what}); nothing was done",
                            hint=f"use the {action.capitalize()} button on {page} and confirm there")
