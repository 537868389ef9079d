"""Benchmarks only: when BENCH_TIMELINE names a directory, every process started with this
folder on PYTHONPATH writes one line per HTTP request it sends to `<dir>/<pid>.tsv`: when the
SDK handed it to httpx, when it went on the wire (after the request hooks: the send guard, the
source's pacing), when its answer was back, by which thread, to which path. Nothing in the
console loads this file; `tests/benchmarks/timeline.py` reads the lines back."""

import os

if os.environ.get("BENCH_TIMELINE"):
    import threading
    import time

    import httpx2

    _directory = os.environ["BENCH_TIMELINE"]
    _files: dict = {}
    _lock = threading.Lock()
    _local = threading.local()
    _send = httpx2.Client.send
    _handle = httpx2.HTTPTransport.handle_request

    def _log(line: str) -> None:
        pid = os.getpid()
        with _lock:
            handle = _files.get(pid)
            if handle is None:
                handle = _files[pid] = open(f"{_directory}/{pid}.tsv", "a", buffering=1)  # noqa: SIM115
            handle.write(line)

    def handle_request(self, request):  # type: ignore[no-untyped-def]
        _local.wire = time.time()
        return _handle(self, request)

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.time()
        _local.wire = 0.0
        status = 0
        try:
            response = _send(self, request, *args, **kwargs)
            status = response.status_code
            return response
        finally:
            ended = time.time()
            wire = _local.wire or ended
            thread = threading.current_thread().name
            _log(
                f"{started:.6f}\t{wire:.6f}\t{ended:.6f}\t{os.getpid()}\t{thread}\t"
                f"{request.method}\t{request.url.path}\t{status}\n"
            )

    httpx2.Client.send = send
    httpx2.HTTPTransport.handle_request = handle_request
