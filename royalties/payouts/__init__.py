"""Payouts (SPEC section 6): a fan's available balance sent to its Stripe account,
exactly once.

Invariants, in plain words:

- A payout is *claimed* before Stripe hears of it: in one committed transaction the
  payout row is inserted and its amount moves ``fan_available -> payout_clearing``.
  The claim holds a per-(fan, currency) lock (advisory on PostgreSQL; SQLite serialises
  writers) and re-reads the balance under it, and a partial unique index allows one
  open payout per fan and currency, so two runs can never claim the same money.
- Stripe is called only once the payout is committed ``submitted`` for that attempt. A
  fresh claim is committed already ``submitted`` (attempt 1): claim and first send are
  one commit, and the audit trail records both steps (``pending``, then ``submitted``).
  A retry moves an open payout to ``submitted`` for a new attempt, and commits, first.
- The transfer's parameters depend only on the stored payout (amount, currency,
  destination, ``transfer_group`` = the run that claimed it, the payout id in
  ``metadata``), so Stripe can always be *asked* whether the payout was made.
- **Ambiguity is resolved by looking, never by assuming.** Stripe replays a saved 500
  for a key's whole life, forgets keys after 24 hours and answers
  ``idempotency_error`` when a key meets other parameters, so no answer about a key
  proves anything on its own. After any uncertain outcome the payout stays
  ``submitted`` and the engine looks for the transfer (``find_transfer``); before a
  retry it looks again. Found: settled ``paid`` with that transfer. Not found: sent
  again -- with the *same* key while the last attempt is younger than ``rekey_after``
  (it may still be running at Stripe, which answers 409 then; Stripe keeps keys far
  longer than that), else with a *new* key, so a saved 500 cannot wedge a payout.
- Only a definite refusal (``balance_insufficient``, a destination that cannot receive
  transfers, ...) -> ``failed`` (clearing -> ``fan_available``), and only from the
  latest attempt; success -> ``paid`` (clearing -> ``fan_paid``).
- Every state change is a conditional UPDATE from the expected state, so concurrent
  settlers move the money once; each change writes an audit event.
- A run holds no transaction open across a call to Stripe: it ends each read before
  sending, and commits each attempt before Stripe hears of it.
- **One layer owns the transactions.** The state machine writes and reads but never
  commits or rolls back; each of its functions says where its caller must draw the
  boundary. The use cases (a run, reconciliation, a webhook, onboarding) commit and
  roll back, and nothing else does.

Cost: a payout is two short transactions around its Stripe call, each a handful of
indexed single-row statements (Core, on the session's connection), whatever the number
of payouts already made; a retry adds one list request to Stripe.

The rooms:

- ``machine``: the states and transitions -- claim, the attempt and key rules
  (``REKEY_AFTER``), looks at Stripe, settling paid or failed, reversal, the audit trail.
- ``payable``: who a run pays (``survey``, ``Minimums``) and why the others are not paid
  (``NOT_PAID_REASONS``).
- ``runs``: one payout run, the use case -- maturing, the platform-balance budget, the
  sender threads, and every commit and rollback of a run.
- ``tracking``: a run's record while it runs -- starting one (one at a time), its
  progress, and whether it is running, finished or stopped (``status``).
- ``connections``: the senders' sessions and PostgreSQL's ``plan_cache_mode``.
- ``onboarding``: a fan's Stripe account and its onboarding links.
- ``webhooks``: Stripe's events about accounts and transfers.
- ``reading``: what people see -- payouts, their audit trail, runs and their payouts
  with why each failed, a run's not-paid counts.
- ``reconcile``: open payouts settled from Stripe; Stripe's transfers against the ledger.
"""

from royalties.payouts.machine import REKEY_AFTER, Outcome
from royalties.payouts.onboarding import (
    PayoutAccount,
    connect_account,
    onboarding_link,
    refresh_account,
)
from royalties.payouts.payable import NOT_PAID_REASONS, Minimums
from royalties.payouts.reading import (
    get_payout,
    get_run,
    list_payouts,
    list_runs,
    not_paid_view,
    run_payouts_page,
)
from royalties.payouts.reconcile import reconcile, settle_open
from royalties.payouts.runs import DEFAULT_CONCURRENCY, Progress, RunReport, run_payouts
from royalties.payouts.view import payout_view
from royalties.payouts.webhooks import handle_webhook

__all__ = [
    "DEFAULT_CONCURRENCY",
    "NOT_PAID_REASONS",
    "REKEY_AFTER",
    "Minimums",
    "Outcome",
    "PayoutAccount",
    "Progress",
    "RunReport",
    "connect_account",
    "get_payout",
    "get_run",
    "handle_webhook",
    "list_payouts",
    "list_runs",
    "not_paid_view",
    "onboarding_link",
    "payout_view",
    "reconcile",
    "refresh_account",
    "run_payouts",
    "run_payouts_page",
    "settle_open",
]
