"""Benchmark (not a test): what 8 hostile uploads hold in a real `httpov web` process (issue #25 item 5).

One `httpov web` (its own accounts file and a farm-wide token, on a private redis-server) and 8 connections at once:
4 signed in as nobody, each announcing --mib MiB and sending it as fast as it can; 2 with the token, trickling
2 KiB/s (slow senders); then 2 more with the token at full speed (past the account's 2 uploads at once). Then one
welcome upload: the token's, a well-formed form whose file part is --mib MiB (not a zip: refused once read).
Reports what each connection got and the server's RSS and the bytes it holds in open temporary files (spooled
bodies) before, at the peak during, and after the flood, and at the peak of the welcome upload. `--repo` measures
another checkout (e.g. main's) with the same procedure.

    python scripts/bench_upload_flood.py [--mib 400] [--repo /work/main]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--mib", type=int, default=400, help="the body each flooding connection announces and sends")
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose `httpov web` is measured")
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)  # `python -m httpov.cli` imports httpov from the working directory
sys.path.insert(0, str(ROOT))

from httpov.local_farm import embedded_redis, free_port, stop_worker, worker_env  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.web.auth import add_user  # noqa: E402

TOKEN = "bench-farm-token-0123456789abcdefghijklmnop"
CHUNK = 64 * 1024


def held(pid: int) -> tuple[int, int]:
    """(RSS, bytes of the regular files it holds open under the temporary folder) of process `pid`, in bytes."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    spooled = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            if target.startswith(tempfile.gettempdir()):
                spooled += os.stat(fd).st_size
        except OSError:
            continue
    return rss, spooled


def hostile(port: int, length: int, token: str | None, rate: float | None, outcome: list[str], i: int,
            form: bool = False) -> None:
    """One upload of `length` bytes, at full speed or `rate` bytes/s (`form`: a file part of that many, in a
    well-formed form); its outcome: the status, or how it ended."""
    started, sent = time.monotonic(), 0
    opening = b'--flood\r\nContent-Disposition: form-data; name="scene"; filename="big.zip"\r\n\r\n' if form else b""
    closing = b"\r\n--flood--\r\n" if form else b""
    length += len(opening) + len(closing)
    head = ["POST /api/jobs HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}", "Accept: application/json",
            "Content-Type: multipart/form-data; boundary=flood"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    ended = ""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        try:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + opening)
            sent = len(opening)
            block = b"\0" * CHUNK
            while sent < length - len(closing) and time.monotonic() - started < 60:
                piece = block if rate is None else block[:max(1, int(rate / 4))]
                piece = piece[:length - len(closing) - sent]
                sock.sendall(piece)
                sent += len(piece)
                if rate is not None:
                    time.sleep(0.25)
            sock.sendall(closing)
            sent += len(closing)
            sock.shutdown(socket.SHUT_WR)
        except OSError as exc:  # the server stopped reading: its answer may be waiting all the same
            ended = f"{type(exc).__name__} "
        took = time.monotonic() - started
        try:
            reply = sock.recv(200).decode(errors="replace").split("\r")[0] or "closed"
        except OSError as exc:
            reply = f"no answer ({type(exc).__name__})"
    outcome[i] = f"{reply}; {ended}after sending {sent / 1024**2:.1f} MiB in {took:.1f} s"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp, embedded_redis(Path(tmp)) as url:
        folder = Path(tmp)
        add_user(folder / "accounts", "alice", "correct horse battery")
        settings = Settings(broker_url=url, state_url=url, storage=str(folder / "storage"), prefix="bench")
        port = free_port()
        env = {**worker_env(settings), "HTTPOV_WEB_TOKENS": TOKEN}
        log = open(folder / "web.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(port), "--accounts",
                                 str(folder / "accounts")], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None, (folder / "web.log").read_text()
                    time.sleep(0.1)
            time.sleep(1)
            before = held(proc.pid)
            length = ARGS.mib * 1024**2
            outcome = ["?"] * 8
            plans = [(None, None)] * 4 + [(TOKEN, 2048.0)] * 2 + [(TOKEN, None)] * 2
            threads = [threading.Thread(target=hostile, args=(port, length, token, rate, outcome, i))
                       for i, (token, rate) in enumerate(plans)]
            started = time.monotonic()
            peak = before
            for n, thread in enumerate(threads):
                if n == 6:  # the account's third and fourth, once its first two are under way
                    time.sleep(1)
                thread.start()
            while any(t.is_alive() for t in threads):
                now = held(proc.pid)
                peak = (max(peak[0], now[0]), max(peak[1], now[1]))
                time.sleep(0.1)
            took = time.monotonic() - started
            time.sleep(3)
            after = held(proc.pid)
            welcome = threading.Thread(target=hostile, args=(port, length, TOKEN, None, outcome, 8, True))
            outcome.append("?")
            welcome.start()
            peak_welcome = after
            while welcome.is_alive():
                now = held(proc.pid)
                peak_welcome = (max(peak_welcome[0], now[0]), max(peak_welcome[1], now[1]))
                time.sleep(0.1)
        finally:
            stop_worker(proc, grace=5)
            log.close()
    mib = 1024**2
    print(f"httpov web of {ROOT}: 8 hostile uploads of {ARGS.mib} MiB each, {took:.1f} s")
    kinds = ["nobody, full speed"] * 4 + ["token, 2 KiB/s"] * 2 + ["token, full speed (3rd/4th)"] * 2 + \
        ["then a welcome upload (token)"]
    for kind, got in zip(kinds, outcome):
        print(f"  {kind:30} {got}")
    for name, (rss, spool) in (("before", before), ("peak during", peak), ("after", after),
                               ("welcome peak", peak_welcome)):
        print(f"  {name:12} RSS {rss / mib:7.1f} MiB   held in temporary files {spool / mib:8.1f} MiB")


if __name__ == "__main__":
    main()
