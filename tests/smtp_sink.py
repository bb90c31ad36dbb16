#!/usr/bin/env python3
"""A real SMTP server for the alert tests (tests/monitor_notify.rs), on aiosmtpd.

    python3 tests/smtp_sink.py --dir DIR [--port N] [--auth USER:PASSWORD]
                               [--starttls CERT KEY | --tls CERT KEY]

Listens on 127.0.0.1 (port 0: any free port), prints `PORT n` on stdout once it accepts
connections, and writes each message it receives to DIR/NNNN.json, atomically:
{"mail_from", "rcpt_tos", "login", "tls", "from", "to",
"subject", "text", "html", "raw"} (headers and parts decoded by Python's email package). With --auth, a login is required and only
USER:PASSWORD is accepted (over plain text too: the tests run on the loopback). With
--starttls, STARTTLS is offered; with --tls, TLS is spoken from the first byte.
Stops on SIGTERM.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import socket
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write(
        "smtp_sink.py: the Python module aiosmtpd is missing: install Debian's python3-aiosmtpd "
        "(bash scripts/dev-services.sh does) or `pip install aiosmtpd`\n"
    )
    sys.exit(3)


def login_of(session):
    data = getattr(session, "auth_data", None)
    if isinstance(data, LoginPassword):
        return data.login.decode()
    return None


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        doc = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": login_of(session),
            # STARTTLS or TLS from the first byte: the connection is encrypted either way.
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "text": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        name = os.path.join(self.directory, "%04d.json" % self.count)
        with open(name + ".tmp", "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.rename(name + ".tmp", name)
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--auth")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    g.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    a = p.parse_args()

    handler = Sink(a.dir)
    kwargs = {"hostname": "sink.test", "auth_require_tls": False}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        kwargs.update(authenticator=authenticator, auth_required=True)
    server_ssl = None
    if a.starttls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*a.starttls)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.tls:
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(*a.tls)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", a.port))
    sock.listen(16)
    port = sock.getsockname()[1]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(handler, loop=loop, **kwargs)

    server = loop.run_until_complete(loop.create_server(factory, sock=sock, ssl=server_ssl))
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    loop.add_signal_handler(signal.SIGINT, lambda: stop.done() or stop.set_result(None))
    print("PORT %d" % port, flush=True)
    loop.run_until_complete(stop)
    server.close()
    loop.run_until_complete(server.wait_closed())


if __name__ == "__main__":
    main()
