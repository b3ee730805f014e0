#!/usr/bin/env python3
"""A deliberately faulty HTTPS server for the download adapter's tests (test-only).

TLS 1.3 with a REQUIRED client certificate from --ca (the handshake fails otherwise). It serves one
artifact (--artifact) under every path; the first path segment picks the fault, and ?n=N a byte count:

  /ok              correct server: Range + If-Range (strong ETag), 206 / 200 / 416
  /drop?n=N        like /ok, then a TCP reset after N body bytes
  /truncate?n=N    like /ok, then a clean TLS close after N body bytes (Content-Length says more)
  /short?n=N       200 without Content-Length, N bytes, clean close (ends "successfully" short)
  /status500       500 Internal Server Error
  /bad-start       206 whose Content-Range starts 7 bytes after the requested start
  /bad-total       206 whose Content-Range total is 10 bytes too large
  /full            ignores Range: always 200 with the whole artifact
  /always416       416 for every Range request
  /oversize        200 with Content-Length and body 100 bytes longer than the artifact
  /oversize-stream 200 without Content-Length, artifact + 100 bytes, then close
  /stall?n=N       200 headers and N body bytes, then nothing for a minute

With &etag=0 no ETag is sent (nothing to resume with). Prints "listening PORT" on stdout once it accepts connections.
"""
import argparse
import hashlib
import http.server
import socket
import ssl
import struct
import sys
import time
import urllib.parse


def main():
    parser = argparse.ArgumentParser()
    for name in ("--cert", "--key", "--ca", "--artifact"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    context.verify_mode = ssl.CERT_REQUIRED

    with open(args.artifact, "rb") as f:
        artifact = f.read()
    etag = '"%s"' % hashlib.sha256(artifact).hexdigest()[:20]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *values):
            sys.stderr.write("%s %s\n" % (self.path, fmt % values))

        def finish(self):
            try:
                super().finish()
            except (OSError, ValueError):
                pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            mode = url.path.strip("/").split("/")[0]
            query = urllib.parse.parse_qs(url.query)
            n = int(query.get("n", ["0"])[0])
            self.send_etag = query.get("etag", ["1"])[0] != "0"
            self.close_connection = True
            start = self.requested_start()
            length = len(artifact)

            if mode == "status500":
                return self.answer(500, b"boom\n")
            if mode == "full":
                start = None
            if mode == "always416" and start is not None:
                return self.answer(416, b"", {"Content-Range": "bytes */%d" % length})
            if mode == "oversize":
                return self.answer(200, artifact + b"x" * 100)
            if mode == "oversize-stream":
                return self.answer(200, artifact + b"x" * 100, length_header=False)
            if mode == "short":
                return self.answer(200, artifact, length_header=False, stop_after=n, how="close")
            if mode == "stall":
                return self.answer(200, artifact, stop_after=n, how="stall")

            if start is not None and start >= length:
                return self.answer(416, b"", {"Content-Range": "bytes */%d" % length})
            if start is None:
                status, body, headers = 200, artifact, {}
            elif mode == "bad-start":
                shifted = min(start + 7, length - 1)
                status, body = 206, artifact[shifted:]
                headers = {"Content-Range": "bytes %d-%d/%d" % (shifted, length - 1, length)}
            elif mode == "bad-total":
                status, body = 206, artifact[start:]
                headers = {"Content-Range": "bytes %d-%d/%d" % (start, length - 1, length + 10)}
            else:
                status, body = 206, artifact[start:]
                headers = {"Content-Range": "bytes %d-%d/%d" % (start, length - 1, length)}
            how = {"drop": "reset", "truncate": "close"}.get(mode)
            self.answer(status, body, headers, stop_after=n if how else None, how=how)

        def requested_start(self):
            """The k of `Range: bytes=k-` when If-Range (if any) matches our ETag, else None."""
            value = self.headers.get("Range")
            if not value or not value.startswith("bytes=") or not value.endswith("-"):
                return None
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range != etag:
                return None
            return int(value[len("bytes="):-1])

        def answer(self, status, body, headers=None, length_header=True, stop_after=None, how=None):
            self.send_response(status)
            if self.send_etag:
                self.send_header("ETag", etag)
            self.send_header("Connection", "close")
            if length_header:
                self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if stop_after is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[:stop_after])
            self.wfile.flush()
            if how == "stall":
                time.sleep(60)
            elif how == "reset":
                # RST: SO_LINGER 0 on the raw socket, then close it without a TLS close_notify.
                raw = socket.socket(fileno=self.connection.detach())
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()
            else:
                try:
                    self.connection.unwrap().close()
                except (OSError, ValueError):
                    pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):
            # The TLS handshake runs in the connection's thread, so a refused client (no or a
            # foreign certificate) never stalls the accept loop.
            tls = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            try:
                tls.settimeout(10)
                tls.do_handshake()
            except (ssl.SSLError, OSError) as error:
                sys.stderr.write("handshake refused: %s\n" % error)
                # The alert is sent; read what the client still sends (its request) before
                # closing, so the kernel does not answer it with a reset that hides the alert.
                try:
                    tls.shutdown(socket.SHUT_WR)
                    tls.settimeout(2)
                    while tls.recv(4096):
                        pass
                except (ssl.SSLError, OSError, ValueError):
                    pass
                tls.close()
                return
            tls.settimeout(None)
            request = tls
            self.RequestHandlerClass(request, client_address, self)

    server = Server(("127.0.0.1", args.port), Handler)
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
