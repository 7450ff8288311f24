"""The mail module on its own: SMTP_URL parsing, composing, and that secrets stay out."""

from __future__ import annotations

import pytest

from royalties.notify.mail import Outbox, SmtpServer, compose


def test_smtp_urls_name_host_port_tls_and_credentials():
    plain = SmtpServer.from_url("smtp://mailer%40shop:p%3Ass@mail.example.com:587")
    assert (plain.host, plain.port, plain.implicit_tls) == ("mail.example.com", 587, False)
    assert (plain.username, plain.password) == ("mailer@shop", "p:ss")
    tls = SmtpServer.from_url("smtps://mail.example.com")
    assert (tls.port, tls.implicit_tls, tls.username) == (465, True, None)
    assert SmtpServer.from_url("smtp://127.0.0.1").port == 25


def test_the_password_is_not_in_the_repr_nor_in_errors():
    assert "hunter2" not in repr(SmtpServer.from_url("smtp://u:hunter2@h:587"))
    for bad in ("http://u:hunter2@h", "smtp://u:hunter2@:25", "smtp://u:hunter2@h:port"):
        with pytest.raises(ValueError) as caught:
            SmtpServer.from_url(bad)
        assert "hunter2" not in str(caught.value)


def test_a_message_has_a_message_id_in_the_senders_domain():
    message = compose(
        sender="Royalties <no-reply@fans.example>", to="a@b.example", subject="Hi", body="x"
    )
    assert message["Message-ID"].endswith("@fans.example>")
    assert message["Date"] and message.get_content().strip() == "x"


def test_the_outbox_delivers_on_its_own_thread_and_survives_failures(caplog):
    seen: list[str] = []

    def transport(message):
        if message["To"] == "bad@example.com":
            raise OSError("connection refused")
        seen.append(message["To"])

    outbox = Outbox(transport)
    for to in ("a@example.com", "bad@example.com", "c@example.com"):
        outbox.send(compose(sender="s@example.com", to=to, subject="s", body="secret link"))
    assert outbox.flush(5)
    assert seen == ["a@example.com", "c@example.com"]
    assert "could not send mail to bad@example.com" in caplog.text
    assert "secret link" not in caplog.text
