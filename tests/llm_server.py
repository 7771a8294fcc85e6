"""A real OpenAI-compatible chat server on loopback, for the chat tests.

It speaks HTTP on 127.0.0.1 (a random free port) in a background thread, so the real
``openai`` client talks to it through ``LLM_BASE_URL``. It records every request
(path, headers, JSON body) and answers from a script of prepared answers: a
completion, streamed chunks (ending normally, with an error event, by dropping the
connection, or by stalling), a delay before answering, an error status, or a 200
whose body is not a completion at all.
Unscripted requests get :attr:`FakeLLM.default_reply`.

    llm = FakeLLM().start()
    llm.reply("《Toy Story》 is a classic.")
    llm.fail(429, headers={"Retry-After": "0"})
    llm.stream(["Hel", "lo"], end="drop")
    ...
    llm.stop()
"""

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """One prepared answer."""

    status: int = 200
    content: str = ""
    chunks: list | None = None
    end: str = "done"  # done | error | drop | stall
    delay: float = 0.0  # seconds before the status line
    pause: float = 0.0  # seconds between streamed chunks
    body: dict | None = None  # error body
    headers: dict = field(default_factory=dict)
    raw: bytes | None = None  # a body sent as is, with status 200


@dataclass
class Recorded:
    path: str
    headers: dict  # names in lower case
    json: dict

    @property
    def messages(self):
        return self.json.get("messages", [])

    @property
    def system(self):
        return next(m["content"] for m in self.messages if m["role"] == "system")


class FakeLLM:
    """The server and its script; one instance serves a whole test session."""

    default_reply = "好的,这是一个默认回答。"

    def __init__(self):
        self.requests = []
        self._script = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None

    # --- the script ----------------------------------------------------------------

    def reply(self, content, delay=0.0):
        """Answer the next request with ``content`` (streamed when asked to)."""
        return self._add(Answer(content=content, delay=delay))

    def stream(self, chunks, end="done", pause=0.0, delay=0.0):
        """Stream ``chunks`` to the next request, then end the way ``end`` says."""
        return self._add(Answer(chunks=list(chunks), end=end, pause=pause, delay=delay))

    def fail(self, status, body=None, headers=None, delay=0.0):
        """Answer the next request with an error status."""
        body = body or {
            "error": {"message": f"error {status}", "type": "test", "code": status}
        }
        return self._add(
            Answer(status=status, body=body, headers=headers or {}, delay=delay)
        )

    def garbage(self, raw=b"<html>Welcome to nginx!</html>", content_type="text/html"):
        """Answer the next request with 200 and a body that is not a completion."""
        return self._add(Answer(raw=raw, headers={"Content-Type": content_type}))

    def _add(self, answer):
        with self._lock:
            self._script.append(answer)
        return answer

    def reset(self):
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def _next(self, recorded):
        with self._lock:
            self.requests.append(recorded)
            return self._script.popleft() if self._script else None

    # --- the server ----------------------------------------------------------------

    @property
    def base_url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self):
        fake = self

        class Handler(_Handler):
            llm = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()  # wakes handlers sleeping in a delay or a stall
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self, seconds):
        self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    llm = None  # set by FakeLLM.start

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        headers = {name.lower(): value for name, value in self.headers.items()}
        recorded = Recorded(self.path, headers, body)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": "not found", "type": "test"}})
            return
        answer = self.llm._next(recorded) or Answer(content=self.llm.default_reply)
        if answer.delay:
            self.llm.wait(answer.delay)
        if answer.raw is not None:
            self._raw(answer.raw, answer.headers)
        elif answer.status != 200:
            self._json(answer.status, answer.body, answer.headers)
        elif body.get("stream"):
            self._stream(answer, body.get("model", "test-model"))
        else:
            content = answer.content or "".join(answer.chunks or [])
            self._json(200, completion(content, body.get("model", "test-model")))

    def _json(self, status, payload, headers=None):
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, data, headers):
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, answer, model):
        chunks = answer.chunks
        if chunks is None:
            half = len(answer.content) // 2
            chunks = [answer.content[:half], answer.content[half:]]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, piece in enumerate(chunks):
            self._event(chunk(piece, model, first=index == 0))
            if answer.pause:
                self.llm.wait(answer.pause)
        if answer.end == "drop":
            # No terminating chunk: the client sees the connection cut mid-body.
            self.close_connection = True
            return
        if answer.end == "stall":
            self.llm.wait(60)
            self.close_connection = True
            return
        if answer.end == "error":
            self._event({"error": {"message": "model overloaded", "type": "test"}})
        self._write(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, payload):
        self._write(f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode())

    def _write(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def completion(content, model):
    """Return a chat.completion object."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def chunk(content, model, first=False):
    """Return a chat.completion.chunk object."""
    delta = {"content": content}
    if first:
        delta["role"] = "assistant"
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
