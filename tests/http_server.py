"""A real HTTP server on 127.0.0.1 that misbehaves on request, for the download tests."""

import contextlib
import http.server
import threading
import time


class Server:
    """Serves `files` ({url path: bytes}); supports Range; faults are queued per path.

    Faults (consumed one per request): "truncate" sends half the body under the full
    Content-Length and closes; "drop" closes without a response; "wrong" sends other
    bytes; "slow" sends the body in small delayed pieces; "ignore_range" answers a Range
    request with the whole file (200).
    """

    def __init__(self):
        self.files = {}
        self.faults = {}
        self.requests = []  # (path, Range header or None)
        self.urls = []  # every request's path with its query
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.urls.append(self.path)
                outer.requests.append((path, self.headers.get("Range")))
                if path not in outer.files:
                    self.send_error(404)
                    return
                body = outer.files[path]
                queue = outer.faults.get(path, [])
                fault = queue.pop(0) if queue else None
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "wrong":
                    body = bytes(reversed(body))
                start = 0
                range_header = self.headers.get("Range")
                if range_header and fault != "ignore_range":
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault == "slow":
                    step = max(1, len(payload) // 20)
                    for i in range(0, len(payload), step):
                        self.wfile.write(payload[i : i + step])
                        self.wfile.flush()
                        time.sleep(0.05)
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def full_gets(self, path):
        return sum(1 for p, r in self.requests if p == path and r is None)


@contextlib.contextmanager
def serving():
    server = Server()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
