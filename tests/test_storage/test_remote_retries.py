"""Remote reads retried against a real faulty HTTP server on loopback (fsspec's http:// through
aiohttp): connections cut mid-body and 503s are retried at the byte reached and counted in
``storage.RETRIES``; a file that always fails is an OSError naming the URL after MAX_RETRIES; a
404 is not retried; the shard loader reads a whole split through the faults as the local one."""
from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")      # fsspec's http:// backend (comes with s3fs, in the dev extra)

from pipeline import schema  # noqa: E402
from pipeline.loader import LoaderConfig, ShardLoader  # noqa: E402
from webtag import storage  # noqa: E402
from webtag.storage import location  # noqa: E402

CUT, UNAVAILABLE = "cut", 503      # faults: a body cut short (connection closed), an HTTP status


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):   # a client gone (a cut, a worker's exit): quiet
        pass


class FaultyServer:
    """Serves the files below ``root`` at ``http://127.0.0.1:PORT/`` (HEAD with Content-Length,
    GET with a single byte range) and injects faults on a schedule:

    - ``schedule[path]``: what the next ranged GETs of that file get, in order: ``None`` (served),
      ``CUT`` (headers and half the body, then the connection is closed) or a status such as 503;
      once the list is used up the file is served;
    - ``size_faults[path]``: statuses the next requests without a range get (HEAD, and the plain
      GET that fsspec falls back to when HEAD fails: how it learns the size when opening);
    - ``always[path]``: a status every request for that file (HEAD included) gets.

    ``log`` holds (method, path, range start or None, outcome) of every request."""

    def __init__(self, root: Path):
        self.root = root
        self.schedule: dict[str, list] = {}
        self.size_faults: dict[str, list] = {}
        self.always: dict[str, int] = {}
        self.log: list[tuple] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"    # keep-alive, as aiohttp's connection pool expects
            disable_nagle_algorithm = True   # no 40 ms delayed-ACK stall between headers and body

            def log_message(self, *args):    # quiet
                pass

            def do_HEAD(self):
                owner._serve(self, head=True)

            def do_GET(self):
                owner._serve(self, head=False)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def faults(self, path: str | None = None) -> list[tuple]:
        """The requests that got a fault (of ``path``)."""
        with self.lock:
            return [e for e in self.log if e[3] != 200 and e[3] != 206 and e[3] != 404
                    and (path is None or e[1] == path)]

    def requests(self, path: str) -> list[tuple]:
        with self.lock:
            return [e for e in self.log if e[1] == path]

    def _serve(self, h: BaseHTTPRequestHandler, head: bool):
        path = h.path.split("?", 1)[0].lstrip("/")
        file = self.root / path
        rng = h.headers.get("Range")
        start = end = None
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a), (int(b) if b else None)
        with self.lock:
            fault = self.always.get(path)
            if fault is None and not head and start is not None and self.schedule.get(path):
                fault = self.schedule[path].pop(0)
            elif fault is None and start is None and self.size_faults.get(path):
                fault = self.size_faults[path].pop(0)
        if fault is not None and fault != CUT:
            self._log(h, path, start, fault)
            return self._status(h, fault)
        if ".." in path.split("/") or not file.is_file():
            self._log(h, path, start, 404)
            return self._status(h, 404)
        size = file.stat().st_size
        if head:
            self._log(h, path, None, 200)
            h.send_response(200)
            h.send_header("Content-Length", str(size))
            h.send_header("Accept-Ranges", "bytes")
            h.end_headers()
            return
        if start is not None and start >= size:
            self._log(h, path, start, 416)
            h.send_response(416)
            h.send_header("Content-Range", f"bytes */{size}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        lo, hi = (0, size - 1) if start is None else (start, min(size - 1, size - 1 if end is None else end))
        with open(file, "rb") as fh:
            fh.seek(lo)
            body = fh.read(hi - lo + 1)
        code = 200 if start is None else 206
        self._log(h, path, start, CUT if fault == CUT else code)
        h.send_response(code)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        if code == 206:
            h.send_header("Content-Range", f"bytes {lo}-{hi}/{size}")
        h.end_headers()
        if fault == CUT:      # half the body, then the connection is gone
            h.wfile.write(body[:len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        h.wfile.write(body)

    def _status(self, h, code: int):
        body = f"{code}\n".encode()
        h.send_response(code)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":            # (a HEAD answer has no body: it would be read as the next request)
            h.wfile.write(body)

    def _log(self, h, path, start, outcome):
        with self.lock:
            self.log.append((h.command, path, start, outcome))


@pytest.fixture
def fast_retries(monkeypatch):
    """Retries after a millisecond (not 0.5 s doubled), at most 3 in a row."""
    monkeypatch.setattr(storage, "RETRY_WAIT", 0.001)
    monkeypatch.setattr(storage, "MAX_RETRIES", 3)


@pytest.fixture
def blobs(tmp_path):
    rng = np.random.default_rng(16)
    root = tmp_path / "www"
    (root / "data").mkdir(parents=True)
    for name, n in (("a.bin", 300_000), ("b.bin", 3_000_000), ("broken.bin", 20_000)):
        (root / "data" / name).write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return root


@pytest.fixture
def server(blobs):
    with FaultyServer(blobs) as srv:
        yield srv


def test_transient_faults_are_retried_at_the_byte_reached(server, blobs, fast_retries, monkeypatch):
    """Three faults in a row on the second block (two bodies cut short, then a 503): the bytes are
    exact, each fault is one retry, and the retried request starts where the last good one ended."""
    monkeypatch.setattr(storage, "READ_AHEAD", 64 << 10)     # several blocks per file
    server.schedule["data/a.bin"] = [None, CUT, CUT, UNAVAILABLE]
    before = storage.RETRIES
    data = location(f"{server.url}/data/a.bin").read_bytes()
    assert data == (blobs / "data" / "a.bin").read_bytes()
    assert storage.RETRIES - before == 3
    gets = [(start, outcome) for method, _, start, outcome in server.requests("data/a.bin") if method == "GET"]
    assert [o for _, o in gets[:4]] == [206, CUT, CUT, UNAVAILABLE] and all(o == 206 for _, o in gets[4:])
    second = gets[1][0]
    assert second > 0 and all(start == second for start, _ in gets[1:5])   # re-opened at the byte reached


def test_faults_on_several_files_with_seeks(server, blobs, fast_retries, monkeypatch):
    """Seeks and partial reads across faults (a cut, a 503, a cut, each on a different request):
    what is read is what the file holds there."""
    monkeypatch.setattr(storage, "READ_AHEAD", 16 << 10)
    server.schedule["data/b.bin"] = [CUT, None, UNAVAILABLE, None, CUT]
    want = (blobs / "data" / "b.bin").read_bytes()
    before = storage.RETRIES
    with location(f"{server.url}/data/b.bin").open("rb") as fh:
        assert fh.read(1000) == want[:1000]
        fh.seek(1_500_000)                     # past the 1 MiB buffer: a new request
        assert fh.read(5000) == want[1_500_000:1_505_000]
        fh.seek(-100, 2)
        assert fh.read() == want[-100:]
        fh.seek(10)
        assert fh.read() == want[10:]
    assert storage.RETRIES - before == len(server.faults("data/b.bin")) == 3


def test_a_failure_to_learn_the_size_is_retried(server, blobs, fast_retries):
    """fsspec's http:// turns a failed HEAD-then-GET (503, 503) into FileNotFoundError: it is
    retried as the 503 it is, not reported as a missing file."""
    server.size_faults["data/b.bin"] = [503, 503, 503, 503]      # two opens: HEAD 503, GET 503
    before = storage.RETRIES
    assert location(f"{server.url}/data/b.bin").read_bytes() == (blobs / "data" / "b.bin").read_bytes()
    assert storage.RETRIES - before == 2
    assert [e[0] for e in server.faults("data/b.bin")] == ["HEAD", "GET"] * 2


def test_is_file_retries_a_503_instead_of_saying_no(server, blobs, fast_retries):
    """A 503 while asking whether a file is there (a split's sizes.json: is it finished?) is
    retried; fsspec's own isfile() would answer False. A missing file is False at once."""
    server.size_faults["data/a.bin"] = [503, 503]      # one info(): HEAD 503, then its GET 503
    before = storage.RETRIES
    assert location(f"{server.url}/data/a.bin").is_file()
    assert storage.RETRIES - before == 1
    assert not location(f"{server.url}/data/nothing-here.bin").is_file()
    assert storage.RETRIES - before == 1


@pytest.mark.parametrize("every", ["request", "range read"])
def test_a_file_that_always_fails_gives_up_naming_the_url(server, fast_retries, every):
    """Always 500 (every request, or only its reads: the size is known): an OSError naming the
    URL after MAX_RETRIES retries, quickly."""
    url = f"{server.url}/data/broken.bin"
    if every == "request":
        server.always["data/broken.bin"] = 500
    else:
        server.schedule["data/broken.bin"] = [500] * 100
    before, t0 = storage.RETRIES, time.monotonic()
    with pytest.raises(OSError) as err:
        location(url).read_bytes()
    assert not isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert url in msg and "giving up" in msg and f"{storage.MAX_RETRIES + 1} times in a row" in msg
    assert "500" in msg
    assert storage.RETRIES - before == storage.MAX_RETRIES
    assert time.monotonic() - t0 < 5


def test_a_missing_file_is_not_retried(server, fast_retries):
    url = f"{server.url}/data/nothing-here.bin"
    before = storage.RETRIES
    with pytest.raises(FileNotFoundError, match=url):
        location(url).read_bytes()
    assert storage.RETRIES == before
    assert len(server.requests("data/nothing-here.bin")) <= 2     # fsspec's HEAD, then its GET: once
    assert not location(url).is_file()


def _epoch(split):
    cfg = LoaderConfig(batch_size=6, workers=2, train=False, image_size=32)
    loader = ShardLoader(split, cfg)
    out = [(b["index"].tolist(), b["image"].numpy()) for b in loader]
    _epoch.retries = loader.remote_retries   # what the loader's workers retried
    return [i for x, _ in out for i in x], np.concatenate([im for _, im in out]), loader.bad_samples


def test_loader_reads_a_split_through_the_faults(shards_v1, fast_retries, monkeypatch):
    """Every shard of the val split has its reads cut and refused a few times: the epoch is the
    local one, batch for batch and pixel for pixel, nothing lost, and every fault the server
    injected is one retry in the loader's workers, summed by the loader (``remote_retries``)."""
    monkeypatch.setattr(storage, "READ_AHEAD", 32 << 10)
    local_idx, local_img, _ = _epoch(shards_v1 / "val")
    shards = sorted(schema.read_sizes(shards_v1 / "val"))
    schedules = [[CUT, UNAVAILABLE], [CUT], [UNAVAILABLE, CUT]]    # a shard is read in one request
    with FaultyServer(shards_v1.parent) as srv:
        for i, name in enumerate(shards):
            srv.schedule[f"{shards_v1.name}/val/{name}"] = list(schedules[i % 3])
        split = schema.split_folder(f"{srv.url}/{shards_v1.name}", "val")
        assert str(split) == f"{srv.url}/{shards_v1.name}/val"
        remote_idx, remote_img, bad = _epoch(split)
        faults = srv.faults()
        served = defaultdict(int)
        for method, path, _, outcome in srv.log:
            served[path] += method == "GET" and outcome in (200, 206)
    assert remote_idx == local_idx and bad == 0
    assert np.array_equal(remote_img, local_img)
    assert len(faults) == sum(len(schedules[i % 3]) for i in range(len(shards))) > 0
    assert _epoch.retries == len(faults)   # each fault one retry in a worker, summed by the loader
    assert all(served[f"{shards_v1.name}/val/{name}"] for name in shards)

    # the same faults read in this process: each one is a retry counted in storage.RETRIES
    with FaultyServer(shards_v1.parent) as srv:
        name = shards[0]
        srv.schedule[f"{shards_v1.name}/val/{name}"] = [CUT, UNAVAILABLE]
        before = storage.RETRIES
        data = location(f"{srv.url}/{shards_v1.name}/val/{name}").read_bytes()
        assert data == (shards_v1 / "val" / name).read_bytes()
        assert storage.RETRIES - before == len(srv.faults()) == 2


def test_server_honours_ranges(server, blobs):
    """The server itself: the HEAD size and ranged GETs that fsspec's http:// makes."""
    import urllib.request
    url = f"{server.url}/data/b.bin"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as r:
        assert int(r.headers["Content-Length"]) == os.path.getsize(blobs / "data" / "b.bin")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as r:
        assert r.status == 206 and r.read() == (blobs / "data" / "b.bin").read_bytes()[10:20]
