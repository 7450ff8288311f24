"""An SMTP server of the test suite's own: aiosmtpd on 127.0.0.1, keeping what it receives."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

LINK_RE = re.compile(r"https?://\S+/dashboard/login/email/[0-9a-z]+")


class Inbox:
    """The aiosmtpd handler: every message accepted, parsed, kept in order.

    ``delay`` makes the server slow to accept (seconds), as a distant server can be."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.delay = 0.0
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        with self._arrived:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        with self._arrived:
            self.messages.clear()
            self.envelopes.clear()
        self.delay = 0.0

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[EmailMessage]:
        """The first ``count`` messages, waiting for them to arrive."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            assert arrived, f"expected {count} message(s), got {len(self.messages)}"
            return list(self.messages[:count])


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def links_in(message: EmailMessage) -> list[str]:
    return LINK_RE.findall(body(message))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[tuple[str, Inbox]]:
    """``(SMTP_URL, inbox)`` of a server listening on 127.0.0.1 until the block ends."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    for attempt in range(5):  # the free port may be taken between probe and bind
        controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
        try:
            controller.start()
            break
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.1)
    try:
        yield f"smtp://127.0.0.1:{controller.port}", inbox
    finally:
        controller.stop()
