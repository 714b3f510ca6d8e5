#!/usr/bin/python3
"""An SMTP server for test/mailer.sh (aiosmtpd) on 127.0.0.1:--port: it writes
each message to the Maildir --maildir and appends one JSON line per message to
--log: {"tls": bool, "auth": login or null, "from", "rcpt"}.

    --starttls CERT KEY     offer STARTTLS with this certificate and key
    --require-tls           refuse MAIL before STARTTLS (530)
    --implicit-tls CERT KEY TLS from the first byte (smtps)
    --auth USER PWFILE      require AUTH (PLAIN or LOGIN) with this password,
                            over TLS only

Standard library and aiosmtpd only (Debian: python3-aiosmtpd).
"""
import argparse
import json
import mailbox
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir, log, implicit_tls):
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        self.maildir = mailbox.Maildir(maildir, create=False)
        self.log = log
        self.implicit_tls = implicit_tls
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.maildir.add(envelope.original_content or envelope.content)
            with open(self.log, "a") as f:
                login = getattr(session, "test_login", None) if session.authenticated else None
                f.write(json.dumps({"tls": self.implicit_tls or session.ssl is not None, "auth": login,
                                    "from": envelope.mail_from, "rcpt": envelope.rcpt_tos}) + "\n")
        return "250 Message accepted for delivery"


def context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--require-tls", action="store_true")
    p.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--auth", nargs=2, metavar=("USER", "PWFILE"))
    a = p.parse_args()

    kwargs = {}
    if a.starttls:
        kwargs["tls_context"] = context(*a.starttls)
        kwargs["require_starttls"] = a.require_tls
    if a.auth:
        user, password = a.auth[0], open(a.auth[1]).read().strip()

        def authenticator(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and data.login.decode() == user \
                and data.password.decode() == password
            if ok:
                session.test_login = user
            return AuthResult(success=ok, handled=False)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # over smtps the whole session is TLS, which aiosmtpd does not see
        kwargs["auth_require_tls"] = not a.implicit_tls
    controller = Controller(Handler(a.maildir, a.log, bool(a.implicit_tls)), hostname="127.0.0.1", port=a.port,
                            ssl_context=context(*a.implicit_tls) if a.implicit_tls else None,
                            **kwargs)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
