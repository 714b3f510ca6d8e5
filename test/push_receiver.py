#!/usr/bin/python3
"""Push providers on loopback for test/mailer.sh, each checking what it receives
as the real one would, and answering as the real one does:

  make-keys DIR            writes the keys the mailer and the receivers share:
                           vapid.pem, apns.p8 (P-256), fcm-key.pem (RSA) and
                           subscriptions.json (browser keys of web push
                           subscriptions "ok", "gone", "busy")
  fcm-credentials DIR URL  writes DIR/fcm.json, a service account whose
                           token_uri is URL
  serve MODE DIR           serves MODE (webpush, fcm or apns) on 127.0.0.1,
                           writing its port to DIR/MODE.port and one JSON line
                           per request to DIR/MODE.jsonl

webpush: POST /sub/NAME, RFC 8030: the VAPID JWT (RFC 8292) is verified with
the public key of vapid.pem, audience, expiry and subject checked, and the
body decrypted (RFC 8291, aes128gcm) with the subscription's private key.
NAME "gone" answers 410, "busy" 503, others 201.
fcm: POST /token exchanges a service account JWT (RS256, verified with the
public key of fcm-key.pem) for an access token; POST
/v1/projects/bis-test/messages:send checks the token and the message.  Device
token "fcm-gone" answers 404 UNREGISTERED, "fcm-busy" 503, others 200.
apns: HTTP/2 without TLS (prior knowledge): POST /3/device/TOKEN checks the
provider token (ES256 with the public key of apns.p8, kid KEYID1234, iss
TEAMID1234), apns-topic shop.example.app and the payload.  Token 00...0
answers 410 Unregistered, 11...1 503, others 200.

A request that fails a check is answered 400 and logged with "error".
Debian packages: python3-cryptography, python3-h2.
"""
import base64
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

APNS_KEY_ID, APNS_TEAM_ID, APNS_TOPIC = "KEYID1234", "TEAMID1234", "shop.example.app"
FCM_EMAIL = "mailer@bis-test.iam.gserviceaccount.com"
lock = threading.Lock()


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def point(public_key):
    return public_key.public_bytes(serialization.Encoding.X962,
                                   serialization.PublicFormat.UncompressedPoint)


def load(path):
    return serialization.load_pem_private_key(open(path, "rb").read(), None)


def verify_jwt(token, public_key):
    """The JWT's header and claims, once its signature (ES256 or RS256) checks out."""
    head, claims, sig = token.split(".")
    header = json.loads(unb64u(head))
    signed = (head + "." + claims).encode()
    raw = unb64u(sig)
    if header.get("alg") == "ES256":
        if len(raw) != 64:
            raise ValueError("an ES256 signature is r || s, 64 bytes")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    elif header.get("alg") == "RS256":
        public_key.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("unexpected alg %r" % header.get("alg"))
    return header, json.loads(unb64u(claims))


def check(cond, what):
    if not cond:
        raise ValueError(what)


def record(directory, mode, entry):
    with lock:
        with open(os.path.join(directory, mode + ".jsonl"), "a") as f:
            f.write(json.dumps(entry) + "\n")


def make_keys(directory):
    os.makedirs(directory, exist_ok=True)
    for name in ("vapid.pem", "apns.p8"):
        with open(os.path.join(directory, name), "w") as f:
            f.write(pem(ec.generate_private_key(ec.SECP256R1())))
    with open(os.path.join(directory, "fcm-key.pem"), "w") as f:
        f.write(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    subs = {}
    for name in ("ok", "gone", "busy"):
        key = ec.generate_private_key(ec.SECP256R1())
        subs[name] = {"private": pem(key), "p256dh": b64u(point(key.public_key())),
                      "auth": b64u(os.urandom(16))}
    with open(os.path.join(directory, "subscriptions.json"), "w") as f:
        json.dump(subs, f)


def fcm_credentials(directory, token_uri):
    with open(os.path.join(directory, "fcm.json"), "w") as f:
        json.dump({"type": "service_account", "project_id": "bis-test", "private_key_id": "kid-1",
                   "private_key": open(os.path.join(directory, "fcm-key.pem")).read(),
                   "client_email": FCM_EMAIL, "client_id": "1", "token_uri": token_uri}, f, indent=2)


def webpush_decrypt(body, sub):
    ua_private = serialization.load_pem_private_key(sub["private"].encode(), None)
    auth = unb64u(sub["auth"])
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    keyid, ciphertext = body[21:21 + idlen], body[21 + idlen:]
    check(idlen == 65 and len(ciphertext) <= rs, "one record with a 65-byte key id")
    as_public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keyid)
    secret = ua_private.exchange(ec.ECDH(), as_public)
    ikm = HKDF(hashes.SHA256(), 32, auth,
               b"WebPush: info\x00" + point(ua_private.public_key()) + keyid).derive(secret)
    cek = HKDF(hashes.SHA256(), 16, salt, b"Content-Encoding: aes128gcm\x00").derive(ikm)
    nonce = HKDF(hashes.SHA256(), 12, salt, b"Content-Encoding: nonce\x00").derive(ikm)
    text = AESGCM(cek).decrypt(nonce, ciphertext, None).rstrip(b"\x00")
    check(text.endswith(b"\x02"), "the last record ends with the delimiter 0x02")
    return json.loads(text[:-1])


class HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = {"time": time.time(), "path": self.path}
        try:
            status, answer = self.server.serve(self, body, entry)
        except Exception as e:          # a failed check: the mailer sent something wrong
            entry["error"] = "%s: %s" % (type(e).__name__, e)
            status, answer = 400, {"error": entry["error"]}
        entry["status"] = status
        record(self.server.directory, self.server.mode, entry)
        self.answer(status, answer)

    def log_message(self, fmt, *args):
        pass


def serve_webpush(handler, body, entry):
    server = handler.server
    name = handler.path.rsplit("/", 1)[-1]
    sub = server.subscriptions[name]
    auth = handler.headers.get("Authorization", "")
    check(auth.startswith("vapid "), "Authorization: vapid t=..., k=...")
    params = dict(p.strip().split("=", 1) for p in auth[6:].split(","))
    check(params["k"] == server.vapid_public, "k is the VAPID public key")
    header, claims = verify_jwt(params["t"], server.vapid_key.public_key())
    check(claims["aud"] == "http://127.0.0.1:%d" % server.server_address[1], "aud is the origin")
    check(time.time() < claims["exp"] <= time.time() + 24 * 3600, "exp within 24 hours")
    check(claims["sub"].startswith("mailto:"), "sub is a contact")
    check(handler.headers.get("Content-Encoding") == "aes128gcm", "Content-Encoding: aes128gcm")
    check(handler.headers.get("TTL", "").isdigit(), "a TTL")
    entry.update(name=name, topic=handler.headers.get("Topic"), payload=webpush_decrypt(body, sub))
    return {"gone": 410, "busy": 503}.get(name, 201), {}


def serve_fcm(handler, body, entry):
    server = handler.server
    if handler.path == "/token":
        form = urllib.parse.parse_qs(body.decode())
        check(form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "grant_type")
        header, claims = verify_jwt(form["assertion"][0], server.fcm_key.public_key())
        check(header.get("kid") == "kid-1", "kid is the key id")
        check(claims["iss"] == FCM_EMAIL, "iss is the service account")
        check(claims["aud"] == "http://127.0.0.1:%d/token" % server.server_address[1], "aud is token_uri")
        check("firebase.messaging" in claims["scope"], "the messaging scope")
        check(0 < claims["exp"] - claims["iat"] <= 3600, "at most an hour")
        server.issued += 1
        token = "access-%d" % server.issued
        server.tokens.add(token)
        entry.update(kind="token", token=token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
    check(handler.path == "/v1/projects/bis-test/messages:send", "the send endpoint")
    bearer = handler.headers.get("Authorization", "")
    check(bearer.startswith("Bearer ") and bearer[7:] in server.tokens, "an access token issued here")
    message = json.loads(body)["message"]
    entry.update(kind="send", device=message["token"], notification=message["notification"],
                 data=message.get("data"))
    if message["token"] == "fcm-gone":
        return 404, {"error": {"code": 404, "message": "Requested entity was not found.",
                               "status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}}
    if message["token"] == "fcm-busy":
        return 503, {"error": {"code": 503, "status": "UNAVAILABLE"}}
    return 200, {"name": "projects/bis-test/messages/%d" % time.time_ns()}


def serve_apns(sock, directory, key):
    """One HTTP/2 connection, prior knowledge, as curl makes it to an http:// URL."""
    import h2.config
    import h2.connection
    import h2.events
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                streams[ev.stream_id] = {"headers": dict(ev.headers), "body": b""}
            elif isinstance(ev, h2.events.DataReceived):
                streams[ev.stream_id]["body"] += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                req = streams.pop(ev.stream_id)
                h = req["headers"]
                entry = {"time": time.time(), "path": h.get(":path")}
                try:
                    token = h[":path"].split("/3/device/", 1)[1]
                    check(h[":method"] == "POST", "POST")
                    check(h.get("apns-topic") == APNS_TOPIC, "apns-topic is the app")
                    check(h.get("apns-push-type") == "alert", "apns-push-type: alert")
                    check(h.get("authorization", "").startswith("bearer "), "a provider token")
                    header, claims = verify_jwt(h["authorization"][7:], key.public_key())
                    check(header.get("kid") == APNS_KEY_ID, "kid is the key id")
                    check(claims["iss"] == APNS_TEAM_ID, "iss is the team id")
                    check(abs(time.time() - claims["iat"]) < 3600, "iat within the hour")
                    payload = json.loads(req["body"])
                    entry.update(device=token, alert=payload["aps"]["alert"],
                                 notification_id=payload.get("notification_id"),
                                 collapse_id=h.get("apns-collapse-id"))
                    status, answer = {"0" * 64: (410, {"reason": "Unregistered"}),
                                      "1" * 64: (503, {"reason": "ServiceUnavailable"})}.get(
                        token, (200, None))
                except Exception as e:
                    entry["error"] = "%s: %s" % (type(e).__name__, e)
                    status, answer = 400, {"reason": "BadRequest"}
                entry["status"] = status
                record(directory, "apns", entry)
                body = json.dumps(answer).encode() if answer else b""
                conn.send_headers(ev.stream_id, [(":status", str(status)),
                                                 ("apns-id", "00000000-0000-0000-0000-000000000001"),
                                                 ("content-length", str(len(body)))],
                                  end_stream=not body)
                if body:
                    conn.send_data(ev.stream_id, body, end_stream=True)
        sock.sendall(conn.data_to_send())


def write_port(directory, mode, port):
    tmp = os.path.join(directory, mode + ".port.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, os.path.join(directory, mode + ".port"))


def serve(mode, directory):
    if mode == "apns":
        key = load(os.path.join(directory, "apns.p8"))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        write_port(directory, mode, listener.getsockname()[1])
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=lambda s=sock: (serve_apns(s, directory, key), s.close()),
                             daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), HttpHandler)
    server.daemon_threads = True
    server.mode, server.directory = mode, directory
    if mode == "webpush":
        server.serve = serve_webpush
        server.vapid_key = load(os.path.join(directory, "vapid.pem"))
        server.vapid_public = b64u(point(server.vapid_key.public_key()))
        server.subscriptions = json.load(open(os.path.join(directory, "subscriptions.json")))
    else:
        server.serve = serve_fcm
        server.fcm_key = load(os.path.join(directory, "fcm-key.pem"))
        server.issued, server.tokens = 0, set()
    write_port(directory, mode, server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make-keys":
        make_keys(sys.argv[2])
    elif cmd == "fcm-credentials":
        fcm_credentials(sys.argv[2], sys.argv[3])
    elif cmd == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
