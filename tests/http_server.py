"""A real HTTP server on 127.0.0.1 that misbehaves on request, for the download tests."""

import contextlib
import email.utils
import hashlib
import http.server
import threading
import time


class Server:
    """Serves `files` ({url path: bytes}); supports Range and If-Range; faults are queued per path.

    Every response carries a strong ETag and a Last-Modified date derived from the bytes
    (`etag=False` / `last_modified=False` drop them), so If-Range fails once a file changes.

    Faults (consumed one per request):
        "truncate"          half the body under the full Content-Length, then close
        "drop"              close without a response
        "wrong"             other bytes (reversed), same length
        "slow"              the body in small delayed pieces
        "ignore_range"      a Range request answered with the whole file (200)
        "no_length"         the whole body, no Content-Length (read until close)
        "no_length_truncate"  half the body, no Content-Length, then close: undetectable by size
        "chunked"           the whole body, chunked transfer encoding
        "chunked_truncate"  half the body in chunks, then close without the last chunk
        "416"               416 Range Not Satisfiable, whatever was asked
        "range_from_zero"   a Range request answered 206 with bytes 0-end (not what was asked)
        "wrong_total"       a Range request answered 206 whose Content-Range states another size
    After `limit` requests the server answers 503, so a client that loops fails instead of hanging.
    """

    def __init__(self, limit=50):
        self.files = {}
        self.faults = {}
        self.requests = []  # (path, Range header or None)
        self.if_ranges = []  # If-Range header of each request, or None
        self.etag = True
        self.last_modified = True
        self.limit = limit
        self.urls = []  # every request's path with its query
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _validators(self, body):
                digest = hashlib.sha256(body).hexdigest()
                if outer.etag:
                    self.send_header("ETag", f'"{digest[:16]}"')
                if outer.last_modified:
                    self.send_header("Last-Modified", outer.modified(body))

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.urls.append(self.path)
                range_header = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                outer.requests.append((path, range_header))
                outer.if_ranges.append(if_range)
                if len(outer.requests) > outer.limit:
                    self.send_error(503, "request limit of the test server reached")
                    return
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
                if fault == "416":
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "wrong":
                    body = bytes(reversed(body))
                if if_range is not None and if_range not in (outer.etag_of(body), outer.modified(body)):
                    range_header = None  # RFC 9110 13.1.5: the file changed, send all of it
                start = 0
                if range_header and fault != "ignore_range":
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    if fault == "range_from_zero":
                        start = 0
                    total = len(body) + 1 if fault == "wrong_total" else len(body)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{total}")
                else:
                    self.send_response(200)
                self._validators(body)
                payload = body[start:]
                if fault in ("chunked", "chunked_truncate"):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    cut = len(payload) // 2 if fault == "chunked_truncate" else len(payload)
                    step = 64 * 1024
                    for i in range(0, cut, step):
                        piece = payload[i : min(i + step, cut)]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    if fault == "chunked":
                        self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if fault not in ("no_length", "no_length_truncate"):
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault in ("truncate", "no_length_truncate"):
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

    @staticmethod
    def etag_of(body):
        return f'"{hashlib.sha256(body).hexdigest()[:16]}"'

    @staticmethod
    def modified(body):
        """A Last-Modified date that changes with the bytes (whole seconds, as HTTP dates are)."""
        seconds = 1_500_000_000 + int(hashlib.sha256(body).hexdigest()[:7], 16)
        return email.utils.formatdate(seconds, usegmt=True)

    def full_gets(self, path):
        return sum(1 for p, r in self.requests if p == path and r is None)


@contextlib.contextmanager
def serving(limit=50):
    server = Server(limit)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
