"""Azurite on 127.0.0.1: reuse one that is listening, else start ours and stop it afterwards."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from shared.storage import AZURITE

ROOT = Path(__file__).resolve().parents[1]
PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
AZURITE_HEAP_MB = 12_288
log = logging.getLogger(__name__)


def connection_string(ports: dict[str, int]) -> str:
    connection = AZURITE
    for service, port in ports.items():
        connection = connection.replace(f":{PORTS[service]}/", f":{port}/")
    return connection


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@contextlib.contextmanager
def ensure_azurite(
    location: Path | None = None, timeout: float = 60.0, ports: dict[str, int] | None = None
) -> Iterator[str]:
    """Yield the connection string of an Azurite on `ports` (default 10000-10002)."""
    ports = ports or PORTS
    connection = connection_string(ports)
    up = [listening(p) for p in ports.values()]
    if all(up):
        log.info("using the Azurite already listening on 127.0.0.1")
        yield connection
        return
    if any(up):
        raise RuntimeError(
            f"Some of the Azurite ports {list(ports.values())} are taken on 127.0.0.1 and others "
            "are not: stop whatever holds them."
        )
    binary = ROOT / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: run `npm ci` (make setup does) first.")
    args = [str(binary), "--silent", "--skipApiVersionCheck", "--loose"]
    for service, port in ports.items():
        args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    if location is not None:
        location.mkdir(parents=True, exist_ok=True)
    args += ["--inMemoryPersistence"] if location is None else ["--location", str(location)]
    # In memory, Azurite's store is node's heap: node's default limit (~4 GB) makes a store of a
    # million activities spend its time collecting garbage. Room to grow unless told otherwise.
    env = {**os.environ}
    env.setdefault("NODE_OPTIONS", f"--max-old-space-size={AZURITE_HEAP_MB}")
    proc = subprocess.Popen(  # noqa: S603
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + timeout
        while not all(listening(p) for p in ports.values()):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"Azurite exited with {proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Azurite did not listen on {list(ports.values())} in {timeout}s"
                )
            time.sleep(0.1)
        log.info("started Azurite (pid %s)", proc.pid)
        yield connection
    finally:
        # Azurite's graceful stop waits for idle keep-alive connections; in memory there is
        # nothing to flush, so it need not wait long. On disk, give it time to save.
        proc.terminate()
        try:
            proc.wait(timeout=2 if location is None else 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
