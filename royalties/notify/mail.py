"""Email out: composed with the standard library, sent through SMTP by a background thread.

- ``SMTP_URL`` names the server: ``smtp://user:password@host:587`` (STARTTLS when the
  server offers it) or ``smtps://...`` (TLS from the first byte). Certificates are
  verified. A password is only ever sent over TLS: a plain ``smtp://`` server that does
  not offer STARTTLS gets no password (the message is not sent and a warning logged).
- Without ``SMTP_URL`` each message is written to the log (logger ``royalties.mail``,
  INFO) instead, link and all, so someone running the engine locally can still sign in.
  That is the only case in which a message's body is logged; the URL's password never is.
- Sending happens on the ``Outbox``'s own thread: a request that queues a message does
  not wait for the server, so it takes as long as one that queues nothing. Messages
  still queued when the process dies are lost (a sign-in link is then asked for again).
"""

from __future__ import annotations

import logging
import os
import queue
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import unquote, urlsplit

log = logging.getLogger("royalties.mail")

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
TIMEOUT_SECONDS = 15.0


class MailError(Exception):
    """Raised when a message cannot be handed to the SMTP server as configured."""


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes; ``repr`` leaves the password out."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """Parse ``smtp://`` / ``smtps://`` URLs; ValueError (without the URL, which may
        hold a password) when it is not one."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError("SMTP_URL must start with smtp:// or smtps://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP_URL has a port that is not a number") from None
        if not parts.hostname:
            raise ValueError("SMTP_URL names no host")
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORTS[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def compose(*, sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message with Date and Message-ID (its domain is the sender's, so no
    DNS lookup of this host's name)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(body)
    return message


def send_smtp(server: SmtpServer, message: EmailMessage) -> None:
    """Hand ``message`` to ``server`` on a new connection."""
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if server.implicit_tls:
        client = smtplib.SMTP_SSL(
            server.host, server.port, timeout=TIMEOUT_SECONDS, context=context
        )
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS)
    with client:
        client.ehlo()
        encrypted = server.implicit_tls
        if not encrypted and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
            encrypted = True
        if server.username is not None:
            if not encrypted:
                raise MailError(
                    f"{server.host}:{server.port} offers no STARTTLS: not sending the "
                    "password unencrypted (use smtps:// or a server with STARTTLS)"
                )
            client.login(server.username, server.password or "")
        client.send_message(message)


def write_to_log(message: EmailMessage) -> None:
    """The no-``SMTP_URL`` transport: the whole message, at INFO."""
    log.info(
        "SMTP_URL is not set, so this message was not sent; here it is:\n%s",
        message.as_string(),
    )


Transport = Callable[[EmailMessage], None]


def transport_for(smtp_url: str | None) -> Transport:
    """SMTP to ``smtp_url``, or the log when it is empty."""
    if not smtp_url:
        return write_to_log
    server = SmtpServer.from_url(smtp_url)
    return lambda message: send_smtp(server, message)


class Outbox:
    """Messages queued by requests, delivered one by one on a thread of the outbox's own.

    The thread starts with the first message (in the process that sends it: a server
    that forks workers after building the app still gets one per worker). A message that
    fails is logged (recipient and reason, never the body) and dropped."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._queue: queue.SimpleQueue[EmailMessage] = queue.SimpleQueue()
        self._pending = 0
        self._changed = threading.Condition()
        self._worker_pid: int | None = None

    def send(self, message: EmailMessage) -> None:
        with self._changed:
            self._pending += 1
            if self._worker_pid != os.getpid():
                self._worker_pid = os.getpid()
                threading.Thread(target=self._work, name="royalties-outbox", daemon=True).start()
        self._queue.put(message)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message was delivered or given up; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._pending == 0, timeout)

    def _work(self) -> None:
        while True:
            message = self._queue.get()
            try:
                self._transport(message)
            except Exception as exc:
                log.warning("could not send mail to %s: %s", message["To"], _reason(exc))
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()


def _reason(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} {exc.smtp_code}"
    return f"{type(exc).__name__}: {exc}"
