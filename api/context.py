"""What views need from the app's configuration besides the session: the salted hash a
client address is compared under, and the fraud thresholds in force."""

from __future__ import annotations

from flask import current_app

from royalties.fraud.detectors import FraudConfig
from royalties.services.links import hash_client_address


def client_address_hash(address: str | None) -> str | None:
    """The salted hash under which an address is compared (clicks, sign-ups, purchases)."""
    if not address:
        return None
    return hash_client_address(current_app.config["CLICK_HASH_SALT"], address)


def fraud_config() -> FraudConfig:
    return current_app.config["FRAUD"]  # type: ignore[no-any-return]
