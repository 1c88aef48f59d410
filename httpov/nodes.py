"""The farm's render nodes in httpov's terms (`httpov nodes`): record, what each renders now, recent batches."""
from __future__ import annotations

import time
from typing import Any

from httpov.errors import NodeNotFoundError
from httpov.settings import live_node_window
from httpov.store import JobStore
from httpov.text import shown

#: A node not seen for this long is shown as lost, then no more (the sweep forgets it after a day).
LOST_SHOWN = 3600.0


def farm_nodes(store: JobStore, lease_seconds: float, now: float | None = None) -> list[dict[str, Any]]:
    """Every render node seen in the last hour, by name: 'up' or 'lost', its record (host, render processes,
    cores, povray and httpov versions), the batches it renders now (from the running batches of live jobs), the
    batches it finished, failed and (of those failed) hung in the last hour, and when it was last seen."""
    now = time.time() if now is None else now
    seen, info = store.nodes()
    draining = store.draining()
    live_since = now - live_node_window(lease_seconds)  # as the store's live_nodes and render_processes compare
    shown = sorted(node for node, last in seen.items() if now - last <= LOST_SHOWN)
    rendering: dict[str, list[dict[str, Any]]] = {}
    for job_id in store.active_ids():
        for batch, running in store.running(job_id).items():
            if not running.get("retrying") and not running.get("handed_back"):
                rendering.setdefault(running.get("node", ""), []).append(
                    {"job": job_id, "batch": batch, "since": running.get("started")})
    counts = store.node_batches(shown)
    nodes = []
    for node in shown:
        record, live = info.get(node, {}), seen[node] >= live_since
        nodes.append({
            "node": node, "state": _state(live, node in draining, dict(record)),
            "host": record.get("host"), "processes": record.get("processes"), "cores": record.get("cores"),
            "povray": record.get("povray"), "httpov": record.get("httpov"), "started": record.get("started"),
            "last_seen": seen[node], "rendering": sorted(rendering.get(node, []), key=lambda r: r["since"] or 0),
            "done_last_hour": counts.get(node, {}).get("done", 0),
            "failed_last_hour": counts.get(node, {}).get("failed", 0),
            # of those, batches whose povray hung (no progress, or past the batch's derived time limit): killed
            "hung_last_hour": counts.get(node, {}).get("hung", 0),
            # why it takes no batch now: 'disk full (cache folder, N MiB free)' (httpov.worker.room), else None
            "fault": record.get("fault") if live else None,
            # why its latest batch of the last hour failed (a wrong storage path, povray's error), else None
            "last_error": counts.get(node, {}).get("last_error") or None,
            # why its storage check at start (and again each minute while failing) failed, else None
            "storage_error": record.get("storage_error") if live else None,
            # why its povray runs without quick waits (no C compiler, a failed check: httpov.worker.waits), else None
            "waits_off": record.get("waits_off") if live else None,
        })
    return nodes


def node_named(nodes: list[dict[str, Any]], name: str) -> str:
    """The full name of the node of `nodes` (farm_nodes) that is up and named `name` (its full name, or the part
    before '@' when one node has it); NodeNotFoundError naming the nodes up otherwise."""
    up = [n["node"] for n in nodes if n["state"] in ("up", "draining")]
    matches = [n for n in up if n == name] or [n for n in up if n.split("@", 1)[0] == name]
    if len(matches) == 1:
        return matches[0]
    said = ", ".join(shown(n) for n in up) or "none"
    if matches:
        raise NodeNotFoundError(f"{len(matches)} render nodes are named {shown(name)}: name one in full ({said})")
    raise NodeNotFoundError(f"no render node up is named {shown(name)} (up: {said})")


def _state(live: bool, draining: bool, record: dict[str, Any]) -> str:
    """'stopped' (it exited cleanly: drained, or stopped by its service manager), 'draining' (told to drain, still
    finishing its batches), 'up', or 'lost' (not seen within the live window, and never said it stopped)."""
    if record.get("stopped"):
        return "stopped"
    if not live:
        return "lost"
    return "draining" if draining else "up"
