"""Events out, the delivering side: webhook endpoints, the fan-out and the deliveries.

``royalties.events`` writes every change of money or membership as an event row in the
change's own transaction. From there:

- ``endpoints``: what an admin, artist or storefront does with its endpoints (create
  with a secret shown once, list, delete, rotate the secret, enable again, read the
  deliveries and their attempts, replay deliveries since a time), and who sees which
  events: :data:`OWNER_COLUMN` is that rule's one home.
- ``fanout``: the worker turns each new event into one delivery per endpoint that may
  see it and wants its type, and hands the events to the fan mail queue, in one
  transaction that also marks the events fanned out.
- ``delivery``: the worker leases due deliveries, signs them the Standard Webhooks way,
  posts them (a few seconds' timeout, no redirects) and records every attempt; a
  non-2xx answer or a timeout is retried on ``WEBHOOK_RETRY_SCHEDULE``, and an endpoint
  that failed for ``WEBHOOK_DISABLE_AFTER_HOURS`` is disabled with a reason its owner
  sees. Each endpoint's batch runs in a thread of its own, so one slow or dead receiver
  never holds up the others.
"""

from royalties.webhooks.delivery import Deliverer, Settings, deliver_due, signature_headers
from royalties.webhooks.endpoints import OWNER_COLUMN, Owner, sees
from royalties.webhooks.fanout import fan_out

__all__ = [
    "OWNER_COLUMN",
    "Deliverer",
    "Owner",
    "Settings",
    "deliver_due",
    "fan_out",
    "sees",
    "signature_headers",
]
