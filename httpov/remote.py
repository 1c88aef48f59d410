"""`httpov --server URL`: the CLI's calls on a farm made through its web API with an account's token, so that a user
needs no broker password. RemoteClient has the methods the CLI calls on httpov.client.Client and answers the same
types; the server's errors come back as httpov's own (the same exit codes). Scenes go up and results come down in
chunks, never whole in memory. Only the standard library speaks HTTP here."""
from __future__ import annotations

import http.client
import ipaddress
import json
import secrets
import ssl
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from httpov import errors
from httpov.errors import (
    ArchiveError,
    BadInputError,
    BrokerUnavailableError,
    ForbiddenError,
    HttpovError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    OptionError,
    Problem,
    ResultError,
    ServerUnavailableError,
    TokenRefusedError,
)
from httpov.events import Event
from httpov.outage import through_outage
from httpov.plan import JobSpec
from httpov.settings import Settings
from httpov.states import JobState
from httpov.text import shown
from httpov.view import JobView

if TYPE_CHECKING:
    from httpov.client import Submission
    from httpov.options import SubmitOptions
    from httpov.retention import Deleted

#: Bytes read from a file or the network at a time: what an upload or download holds in memory.
CHUNK = 256 * 1024
#: Seconds a socket operation may take: a quick call, and one whose answer waits for the server's own transfers.
QUICK, SLOW = 60.0, 900.0
#: A transfer's progress, told (bytes done, bytes in all or None when the server did not say).
Transfer = Callable[[int, "int | None"], None]


def _error_classes() -> dict[str, type[HttpovError]]:
    """httpov's errors by name, those made from a message and a hint (as the server's JSON carries them)."""
    found = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, HttpovError) and value.__init__ is HttpovError.__init__:
            found[value.__name__] = value
    return found


_KINDS = _error_classes()
#: Without a `kind` from the server, the error an HTTP status stands for.
_BY_STATUS: dict[int, type[HttpovError]] = {400: BadInputError, 403: ForbiddenError, 404: JobNotFoundError,
                                            409: JobStateError, 413: BadInputError, 422: ResultError,
                                            503: BrokerUnavailableError}


def server_error(server: str, status: int, body: Mapping[str, Any]) -> HttpovError:
    """The httpov error a refusal of the server stands for: its `kind` (the error class on the server) when it is
    one of httpov's, else by the HTTP status; 401 is the token."""
    message = str(body.get("error") or f"{server} answered HTTP {status}")
    hint = body.get("hint")
    if status == 401:
        return TokenRefusedError(f"the server {server} refused the token: {message}")
    kind = _KINDS.get(str(body.get("kind")))
    if kind is None and str(body.get("kind", "")) in ("FieldError", "OptionError"):
        kind = BadInputError
        fields = body.get("errors")
        if isinstance(fields, dict) and fields:  # an OptionError again: the CLI says flags (--after: ...) as direct
            return OptionError([Problem((str(field),), _template(str(field), str(text)), str(hint) if hint else None)
                                for field, text in fields.items()])
    kind = kind or _BY_STATUS.get(status)
    if kind is None:
        return HttpovError(f"{server} answered HTTP {status}: {message}")
    return kind(message, str(hint) if hint else None)


def _template(field: str, text: str) -> str:
    """A field's error as the server said it ('after: there is no job a1b2 of bob's', 'width must be at least 1') as
    a Problem's template naming the field first ('{0}: there is no job...'); the scene's (an argument of the CLI, not
    a flag) as it is."""
    said = errors.literal(text)
    if field == "scene":
        return said
    if errors.names_field(field, text):
        return "{0}" + said[len(field):]
    return "{0}: " + said


def multipart(fields: Mapping[str, str], file_field: str, file_name: str, boundary: str) -> tuple[bytes, bytes]:
    """What goes before and after a file's bytes in a multipart/form-data body: the text fields, the file's part
    header; then the closing boundary."""
    head = b""
    for name, value in fields.items():
        head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").encode() + \
            value.encode() + b"\r\n"
    head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{file_name}\"\r\n"
             "Content-Type: application/zip\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


def file_chunks(path: Path, on_sent: Transfer | None = None, size: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes, `size` at a time (never more in memory), telling `on_sent` how far it got."""
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(size):
            done += len(chunk)
            yield chunk
            if on_sent:
                on_sent(done, total)


class RemoteClient:
    """The CLI's Client over HTTP: each method is one call of the farm's JSON API (README: JSON API)."""

    def __init__(self, settings: Settings, transfer: Callable[[str], Transfer] | None = None) -> None:
        if not settings.server:
            raise BadInputError("RemoteClient needs a server URL (--server, HTTPOV_SERVER)")
        self.settings = settings
        self.server = settings.server.rstrip("/")
        parts = urlsplit(self.server)
        self._https = parts.scheme.lower() == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._base = parts.path.rstrip("/")  # a farm served under a path behind its proxy
        self._transfer = transfer
        self._jobs_total: int | None = None
        self._last_headers: dict[str, str] = {}

    # HTTP
    @property
    def token_in_clear(self) -> bool:
        """Whether the token would cross a network unencrypted: http:// to a host other than this machine."""
        if self._https or not self.settings.token:
            return False
        if self._host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self._host).is_loopback
        except ValueError:
            return True

    def _send(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
              headers: Mapping[str, str] | None = None, timeout: float = QUICK) -> tuple[http.client.HTTPConnection,
                                                                                         http.client.HTTPResponse]:
        """One request; answers the connection and its response, a 2xx one (anything else is raised as httpov's
        error). The caller closes the connection. `timeout`: for each socket operation (the server's answer
        to a submit or a results download comes once it has stored or gathered everything)."""
        sent = {"Accept": "application/json", "User-Agent": "httpov-cli", **(headers or {})}
        if self.settings.token:
            sent["Authorization"] = f"Bearer {self.settings.token}"
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            conn.request(method, self._base + path, body=body, headers=sent)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ServerUnavailableError(f"cannot reach the server {self.server}: "
                                         f"{getattr(exc, 'strerror', None) or exc}") from None
        if response.status >= 300:
            try:
                raw = response.read(64 * 1024)
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                conn.close()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            raise server_error(self.server, response.status, answer if isinstance(answer, dict) else {})
        return conn, response

    def _json(self, method: str, path: str, form: Mapping[str, str] | None = None) -> Any:
        body, headers = None, {}
        if form is not None:
            body, headers = urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
        conn, response = self._send(method, path, body, headers)
        try:
            data = response.read()
            self._last_headers = dict(response.getheaders())
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnavailableError(f"the server {self.server} stopped answering: {exc}") from None
        finally:
            conn.close()
        try:
            return json.loads(data)
        except ValueError:
            raise HttpovError(f"the server {self.server} did not answer JSON: is it `httpov web`?") from None

    def _download(self, path: str, target: Path, what: str) -> dict[str, str]:
        """GET `path` into the file `target`, CHUNK bytes at a time; answers the response's headers. While the server
        builds it (202), ask again after its Retry-After (1 to 30 s)."""
        while True:
            conn, response = self._send("GET", path, timeout=SLOW)
            if response.status != 202:
                break
            try:
                wait = min(30.0, max(1.0, float(response.getheader("Retry-After") or 1)))
            except ValueError:
                wait = 1.0
            conn.close()
            time.sleep(wait)
        shown_progress = self._transfer(what) if self._transfer else None
        length = response.getheader("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        try:
            with open(target, "wb") as sink:
                while chunk := response.read(CHUNK):
                    sink.write(chunk)
                    done += len(chunk)
                    if shown_progress:
                        shown_progress(done, total)
            if total is not None and done != total:
                raise ServerUnavailableError(f"the server {self.server} stopped after {done} of {total} bytes")
            return dict(response.getheaders())
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnavailableError(f"the server {self.server} stopped answering: {exc}") from None
        finally:
            conn.close()
            if shown_progress:
                shown_progress(done, done)  # a bar that stopped short is closed too

    @staticmethod
    def _job(job_id: str) -> str:
        return quote(job_id, safe="")

    # submit
    def submit(self, source: Path, options: SubmitOptions) -> Submission:
        """Pack the scene as `httpov submit` does (a folder or .ini/.pov into a checked zip on disk) and send that
        file to the server in chunks; the server checks, stores and queues it (Client.submit there)."""
        from httpov.client import Submission, _default_name, _scene_archive
        from httpov.scene import locate_scene

        with tempfile.TemporaryDirectory(prefix="httpov-submit-") as tmp:
            zip_path, prefer, names = _scene_archive(Path(source), Path(tmp), self.settings.archive_limits())
            with zipfile.ZipFile(zip_path) as zf:  # its ini or .pov only: the scene's text, not its assets
                layout, _ = locate_scene(names, lambda n: zf.read(n).decode("utf-8", "replace"), prefer)
            fields = {"name": options.name or _default_name(Path(source), layout), "priority": str(options.priority),
                      "radiosity_cache": options.radiosity_cache, "photons": options.photons}
            for key in ("frames", "width", "height", "count", "slices", "slice_rows", "time_limit", "user", "pool",
                        "max_processes", "max_nodes", "after_frames"):
                value = getattr(options, key)
                if value is not None:
                    fields[key] = str(value)
            if options.notify:
                fields["notify"] = " ".join(options.notify)
            if options.after:
                fields["after"] = ",".join(options.after)
            for flag in ("any_povray", "strict", "after_anyway"):
                if getattr(options, flag):
                    fields[flag] = "1"
            if prefer is not None:  # the .ini or .pov the user named, among the folder's others
                fields["scene_file"] = prefer
            boundary = "httpov-" + secrets.token_hex(16)
            head, tail = multipart(fields, "scene", "scene.zip", boundary)
            size = zip_path.stat().st_size
            progress = self._transfer(f"uploading {Path(source).name}") if self._transfer else None
            body = _chained([head], file_chunks(zip_path, progress), [tail])
            conn, response = self._send("POST", "/api/jobs", body, {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail))}, timeout=SLOW)
            try:
                answer = json.loads(response.read())
            finally:
                conn.close()
        return Submission(JobSpec.from_dict(answer["spec"]), bool(answer.get("uploaded")), answer.get("ignored", []),
                          answer.get("notes", []), answer.get("warnings", []))

    # looking at jobs
    def view(self, job_id: str) -> JobView:
        return JobView.from_json(self._json("GET", f"/api/jobs/{self._job(job_id)}"))

    def views(self, states: list[str] | None = None, name: str | None = None, user: str | None = None,
              limit: int | None = None) -> list[JobView]:
        query = {key: value for key, value in (("state", ",".join(states or [])), ("name", name), ("user", user),
                                               ("limit", str(limit) if limit else None)) if value}
        found = self._json("GET", "/api/jobs" + (f"?{urlencode(query)}" if query else ""))
        total = self._last_headers.get("X-Httpov-Jobs", "")
        self._jobs_total = int(total) if total.isdigit() else None
        return [JobView.from_json(item) for item in found]

    def job_count(self) -> int:
        if self._jobs_total is None:
            self.views(limit=1)
        return self._jobs_total or 0

    def state(self, job_id: str) -> str:
        return self.view(job_id).state

    def events(self, job_id: str | None = None, after: str | None = None, limit: int = 50) -> list[Event]:
        """GET /api/events: the job events the token's account may see, oldest first."""
        query = urlencode({k: v for k, v in (("job", job_id), ("after", after), ("limit", str(limit))) if v})
        return [Event(**{f: item[f] for f in ("id", "at", "kind", "job", "owner", "detail")})
                for item in self._json("GET", f"/api/events?{query}")]

    def follow_events(self, job_id: str | None = None, after: str | None = None, wait: float = 2.0,
                      until: float | None = None) -> Iterator[Event | None]:
        """The events after `after` (None: from now on) as they come: the JSON list asked every `wait` seconds (not
        the event stream, which holds one of the server's few stream slots); None after a look with none."""
        from httpov.events import MAX_LIMIT

        last = after
        if last is None:
            newest = self.events(job_id, limit=1)
            last = newest[-1].id if newest else "0-0"
        while until is None or time.time() < until:
            found = self.events(job_id, last, MAX_LIMIT)
            yield from found
            if found:
                last = found[-1].id
            else:
                yield None
                time.sleep(wait)

    def follow(self, job_id: str, poll: float = 1.0, timeout: float | None = None,
               on_outage: Callable[[str], None] | None = None) -> Iterator[JobView]:
        """The job's view every `poll` seconds until it ends, riding out the farm's Redis outage (the server's
        503) as `httpov watch` does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            view = through_outage(lambda: self.view(job_id), self.settings.outage_seconds, on_outage)
            yield view
            if view.ended or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(poll)

    def wait(self, job_id: str, on_progress: Callable[[JobView], None] | None = None, poll: float = 0.5,
             timeout: float | None = None, on_outage: Callable[[str], None] | None = None) -> JobView:
        """As Client.wait: until the job ends; JobFailedError unless every frame rendered."""
        from httpov.client import job_failed

        for view in self.follow(job_id, poll, timeout, on_outage):
            if on_progress:
                on_progress(view)
        if not view.ended:
            raise JobFailedError(f"job {job_id} still {view.state} after {timeout:.0f}s")
        if view.state != JobState.DONE:
            raise job_failed(view)
        return view

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/nodes"))

    def drain_node(self, node: str) -> str:
        return str(self._json("POST", f"/api/nodes/{quote(node, safe='')}/drain", {})["node"])

    def metrics(self) -> bytes:
        """The farm's Prometheus metrics, from the server's /metrics."""
        conn, response = self._send("GET", "/metrics", None, {})
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnavailableError(f"the server {self.server} stopped answering: {exc}") from None
        finally:
            conn.close()

    def fetch(self, job_id: str, output: Path, on_file: Callable[[int, int], None] | None = None) -> list[Path]:
        """The job's frames into `output` and its logs into `output/logs`, as Client.fetch: one zip of them
        downloaded to disk in chunks, each member checked against the job's frame size before it is unpacked."""
        from httpov import results

        view = self.view(job_id)
        output = Path(output)
        images: list[Path] = []
        with tempfile.TemporaryDirectory(prefix="httpov-fetch-") as tmp:
            local = Path(tmp) / "results.zip"
            self._download(f"/api/jobs/{self._job(job_id)}/results.zip", local, f"downloading job {job_id}")
            (output / "logs").mkdir(parents=True, exist_ok=True)  # only once the server has let us download
            key = f"{job_id}-results.zip"
            try:
                with zipfile.ZipFile(local) as zf:
                    infos = zf.infolist()
                    if len(infos) > view.frames_total + 2 * view.batches_total + 16:
                        raise ResultError(f"{shown(key)} holds {len(infos)} files, more than job {job_id} can have")
                    for info in infos:
                        name = PurePosixPath(info.filename)
                        if len(name.parts) == 2 and name.parts[0] == "logs" and name.suffix == ".log":
                            target, budget = output / "logs" / name.name, results.LOG_MAX_BYTES
                        elif len(name.parts) == 1 and name.suffix == ".png":
                            target, budget = output / name.name, results.frame_bytes(view.width, view.height)
                        else:
                            raise ResultError(f"{shown(key)} holds {shown(info.filename)!r}: refused")
                        if results.unpack_member(zf, info, target, budget, key, view.width, view.height):
                            images.append(target)
            except (ArchiveError, zipfile.BadZipFile) as exc:
                raise ResultError(f"{shown(key)} refused: {shown(exc)}") from None
        if on_file:
            on_file(len(images), len(images))
        return sorted(images)

    # job control
    def _control(self, job_id: str, action: str, form: Mapping[str, str] | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/api/jobs/{self._job(job_id)}/{action}", form or {}))

    def cancel(self, job_id: str) -> None:
        self._control(job_id, "cancel")

    def pause(self, job_id: str) -> None:
        self._control(job_id, "pause")

    def resume(self, job_id: str) -> int:
        return int(self._control(job_id, "resume").get("batches_queued", 0))

    def retry(self, job_id: str, frames: tuple[int, int] | None = None) -> int:
        form = {"frames": f"{frames[0]}-{frames[1]}"} if frames is not None else {}
        return int(self._control(job_id, "retry", form).get("batches_queued", 0))

    def set_priority(self, job_id: str, priority: int) -> int:
        return int(self._control(job_id, "priority", {"priority": str(priority)}).get("batches_moved", 0))

    def delete(self, job_id: str, force: bool = False) -> Deleted:
        from httpov.retention import Deleted

        done = self._json("DELETE", f"/api/jobs/{self._job(job_id)}" + ("?force=1" if force else ""))
        return Deleted(job_id=done["id"], name=done.get("name", ""), state=done.get("state", ""),
                       finished=done.get("finished"), objects=done.get("objects", 0),
                       redis_keys=done.get("redis_keys", 0), scene_deleted=bool(done.get("scene_deleted")))


def _chained(*parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield from part
