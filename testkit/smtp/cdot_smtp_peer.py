"""A real SMTP server for the notification tests (aiosmtpd), on a loopback port it picks.

Every message it accepts is written to DIR as N.eml (the bytes received) with N.json beside
it (envelope sender and recipients, whether TLS was on, the login used). While DIR/reply
exists, DATA is answered with its content instead (e.g. "451 4.3.0 try later"), so a test
can make the server refuse without restarting it. Prints "listening on HOST:PORT" once it
serves.
"""
import argparse
import asyncio
import json
import os
import ssl

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Mailbox:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        reply = os.path.join(self.directory, "reply")
        if os.path.exists(reply):
            with open(reply, encoding="utf-8") as f:
                return f.read().strip()
        self.count += 1
        base = os.path.join(self.directory, str(self.count))
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            # Implicit TLS or after STARTTLS: the transport is TLS either way.
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
        }
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w", encoding="utf-8") as f:
            json.dump(meta, f)
        # The .eml appears last and whole: a test polls for it.
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 queued as cdot-%d" % self.count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tls", choices=["starttls", "implicit", "none"], default="starttls")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--username")
    p.add_argument("--password")
    a = p.parse_args()

    context = None
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == a.username
            and auth_data.password.decode() == a.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    handler = Mailbox(a.dir)
    with_auth = a.username is not None

    def factory():
        return SMTP(
            handler,
            hostname="cdot-smtp-peer",
            tls_context=context if a.tls == "starttls" else None,
            require_starttls=a.tls == "starttls",
            authenticator=authenticator if with_auth else None,
            auth_required=with_auth,
            auth_require_tls=a.tls != "none",
        )

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, a.host, 0, ssl=context if a.tls == "implicit" else None
        )
        host, port = server.sockets[0].getsockname()[:2]
        print("listening on %s:%d" % (host, port), flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
