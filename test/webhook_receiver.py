#!/usr/bin/python3
"""A webhook receiver for test/mailer.sh: an HTTP server on 127.0.0.1 that
appends every request as one JSON line ({"time", "method", "path", "headers",
"body"}) to --log, and answers 200 unless the control file says otherwise.

The control file (--control, read again for each request; absent means the
defaults) is JSON:
    {"status": 200,                     the answer's status code
     "delay": 0,                        seconds to wait before answering
     "by_address": {"+4670...": 404},   a status per "address" of the body
     "body_hex": "46656c"}              the answer's body, any bytes, in hex
An error answer carries a short JSON body, {"error": "..."}, by default.

The port it listens on (0: any free one) is written to --port-file once it
listens.  Standard library only.
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log_lock = threading.Lock()


def read_control(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        body = raw.decode("utf-8", errors="replace")
        record = {"time": time.time(), "method": self.command, "path": self.path,
                  "headers": dict(self.headers.items()), "body": body}
        # recorded on arrival: a request whose sender dies before the answer counts
        with log_lock:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())

        control = read_control(self.server.control_path) if self.server.control_path else {}
        status = int(control.get("status", 200))
        try:
            address = json.loads(body).get("address")
        except (ValueError, AttributeError):
            address = None
        status = int(control.get("by_address", {}).get(address, status)) if address else status
        delay = float(control.get("delay", 0))
        if delay > 0:
            time.sleep(delay)

        if "body_hex" in control:
            answer = bytes.fromhex(control["body_hex"])
        elif 200 <= status <= 299:
            answer = b'{"ok": true}'
        else:
            answer = json.dumps({"error": "test receiver answers %d" % status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_PUT = do_POST

    def log_message(self, fmt, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", required=True, help="file that requests are appended to")
    parser.add_argument("--control", help="JSON file that says how to answer")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument("--port-file", help="file the port is written to")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.log_path = args.log
    server.control_path = args.control
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % server.server_address[1])
        os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
