"""A real S3-compatible HTTP server (moto) on 127.0.0.1 for tests: in a thread, or as its own process."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from httpov.local_farm import free_port
from tests.conftest import wait_until

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def s3_env(endpoint: str) -> dict[str, str]:
    """The environment a process needs to talk to the test server through boto3's standard settings."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def apply_env(monkeypatch: Any, endpoint: str) -> None:
    """Point boto3 in this process at `endpoint` (and away from any real AWS profile)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_env(endpoint).items():
        monkeypatch.setenv(name, value)


def make_bucket(endpoint: str, bucket: str) -> None:
    """Create `bucket` on the server at `endpoint`."""
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **_client_credentials()).create_bucket(Bucket=bucket)


def _client_credentials() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@contextlib.contextmanager
def moto_thread() -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1 and a port the kernel picks; yields its endpoint URL.

    Other processes can reach it too, as long as this one lives."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def moto_process(workdir: Path, timeout: float = 30.0) -> Iterator[str]:
    """`python -m moto.server -H 127.0.0.1 -p PORT` as its own process group; yields its endpoint URL.

    Its request recorder writes to `workdir`/moto_recording (see start_recording/recorded_requests)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(workdir / "moto_recording")}
    log = open(workdir / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited: {(workdir / 'moto.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).read()
        except OSError:
            return False
        return True

    try:
        if not wait_until(answers, timeout):
            raise RuntimeError(f"moto server did not answer on {endpoint}")
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _post(endpoint: str, path: str) -> bytes:
    request = urllib.request.Request(f"{endpoint}{path}", data=b"", method="POST")
    return urllib.request.urlopen(request, timeout=10).read()


def start_recording(endpoint: str) -> None:
    """Clear moto's request log, then record every request the server receives from now on."""
    _post(endpoint, "/moto-api/recorder/reset-recording")
    _post(endpoint, "/moto-api/recorder/start-recording")


def recorded_requests(endpoint: str) -> list[dict[str, Any]]:
    """The requests the server received since start_recording: dicts with method, url, headers."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/recorder/download-recording", timeout=10) as response:
        text = response.read().decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
