"""Every request the console sends has a total deadline (connect + write + read), not only a
timeout per phase: a response that drips in under the per-read timeout is cut at the deadline,
and a request whose deadline passed before it left (its thread froze after the send guard) is
never sent."""

import socket
import threading
import time

import openai
import pytest

from migrations_app import openai_client


class DrippingServer:
    """Answers every request with headers at once, then one body byte every `every` seconds."""

    def __init__(self, every=0.2, total=30):
        self.every, self.total = every, total
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stop = threading.Event()
        self.server = threading.Thread(target=self.serve, daemon=True)
        self.server.start()

    def serve(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self.drip, args=(conn,), daemon=True).start()

    def drip(self, conn):
        with conn:
            conn.recv(65536)
            head = (
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                f"content-length: {self.total}\r\n\r\n"
            )
            try:
                conn.sendall(head.encode())
                for _ in range(self.total):
                    if self.stop.wait(self.every):
                        return
                    conn.sendall(b" ")
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.server.join()
        self.sock.close()


@pytest.fixture
def dripping():
    server = DrippingServer()
    yield server
    server.close()


def client(url):
    http = openai_client._http_client({})
    return openai.OpenAI(api_key="test", base_url=url, max_retries=0, timeout=5, http_client=http)


def test_a_response_dripping_under_the_read_timeout_is_cut_at_the_deadline(dripping, settings):
    settings.API_TIMEOUT_SECONDS = 1  # each byte comes well within the 5 s read timeout
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(dripping.url).get("/conversations/conv_x", cast_to=dict)
    assert time.monotonic() - started < 2.5, "the total deadline, not 30 reads of 0.2 s"


def test_a_request_past_its_deadline_before_it_leaves_is_never_sent(dripping, settings):
    settings.API_TIMEOUT_SECONDS = 0  # the deadline passes before the first byte could leave
    with pytest.raises(openai.APITimeoutError):
        client(dripping.url).post("/conversations", body={}, cast_to=dict)
    settings.API_TIMEOUT_SECONDS = 0.5  # a request that does leave, for comparison
    with pytest.raises(openai.APITimeoutError):
        client(dripping.url).post("/conversations", body={}, cast_to=dict)
    assert dripping.connections == 1, "only the second request reached the server"
