"""Typed ORM models, one module per aggregate. Importing this package registers them all."""

from royalties.models.accounts import ApiKey, SignInLink
from royalties.models.audit import OperatorAction
from royalties.models.catalog import CONTENT_KINDS, Artist, Content, RewardPlan, Storefront
from royalties.models.events import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from royalties.models.fraud import FraudSignal, ReviewDecision, SignalClearance
from royalties.models.graph import Fan, FanAncestor
from royalties.models.idempotency import IdempotencyRecord
from royalties.models.insights import InsightsCache
from royalties.models.ledger import LedgerAccount, LedgerEntry, LedgerTransaction
from royalties.models.links import Click, ShareLink
from royalties.models.notices import FanNotice, WorkerSchedule
from royalties.models.payouts import Payout, PayoutEvent, PayoutRun, WebhookEvent
from royalties.models.sales import Purchase, Refund, Reward

__all__ = [
    "CONTENT_KINDS",
    "ApiKey",
    "Artist",
    "Click",
    "Content",
    "Event",
    "Fan",
    "FanAncestor",
    "FanNotice",
    "FraudSignal",
    "IdempotencyRecord",
    "InsightsCache",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "OperatorAction",
    "Payout",
    "PayoutEvent",
    "PayoutRun",
    "Purchase",
    "Refund",
    "ReviewDecision",
    "Reward",
    "RewardPlan",
    "ShareLink",
    "SignInLink",
    "SignalClearance",
    "Storefront",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WorkerSchedule",
]
