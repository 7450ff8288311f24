"""The dashboard's mail, one home for its texts: sign-in links asked for on the login
page, and artists' invitations. Links are built on ``PUBLIC_BASE_URL``, never on the
request's Host header: a forged Host would otherwise send the victim a working link to
the forger's site. Sending is ``royalties/notify/mail.py``'s (``outbox()``)."""

from __future__ import annotations

from email.message import EmailMessage

from flask import current_app, url_for

from api.extensions import outbox
from royalties.notify.mail import compose
from royalties.services.accounts import Invitation
from royalties.sign_in import Issued

LINK_SUBJECT = "Your sign-in link"
INVITE_SUBJECT = "You are invited to the fan royalties dashboard"


def _link_url(token: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return base + url_for("web.login_link", token=token)


def _compose(to: str, subject: str, body: str) -> EmailMessage:
    return compose(sender=current_app.config["MAIL_FROM"], to=to, subject=subject, body=body)


def sign_in_mail(email: str, issued: list[Issued]) -> EmailMessage:
    """One message to ``email`` with a link for every identity it signs in as."""
    lines = []
    for one in issued:
        who = one.identity
        name = {"fan": f"fan {who.label}", "artist": f"artist {who.label}"}.get(who.role, who.role)
        lines.append(f"To sign in as {name}, open:\n{_link_url(one.token)}\n")
    body = (
        "Someone, hopefully you, asked to sign in to the fan royalties dashboard with "
        "this address.\n\n"
        + "\n".join(lines)
        + "\nEach link works once, for 15 minutes. If you did not ask for it, ignore this "
        "message: nothing happens unless the link is opened and Sign in is pressed.\n"
    )
    return _compose(email, LINK_SUBJECT, body)


def invitation_mail(invitation: Invitation) -> EmailMessage:
    hours = current_app.config["INVITE_LINK_HOURS"]
    body = (
        f"The operator of the fan royalties platform invites you, as artist "
        f"{invitation.name}, to your dashboard: your sales, your fans' referrals and "
        "your reward plan.\n\n"
        f"To sign in, open:\n{_link_url(invitation.token)}\n\n"
        f"The link works once, for {hours} hours. Later, ask for a new link on the sign-in "
        "page with this address. If you did not expect this message, ignore it: nothing "
        "happens unless the link is opened and Sign in is pressed.\n"
    )
    return _compose(invitation.email, INVITE_SUBJECT, body)


def send_invitation(invitation: Invitation) -> None:
    outbox().send(invitation_mail(invitation))
