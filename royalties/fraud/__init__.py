"""Fraud (issue 6): cash rewards attract people who game them.

Every rule about fraud lives in this package:

- ``detectors``: pure functions that turn facts into findings (no session, no I/O);
  their thresholds are configuration (``FraudConfig``), not code.
- ``signals``: a finding recorded as a signal, with its reason, on what it concerns (a
  reward, a fan or a link); the batch scans; clearing a signal; and the one SQL
  expression that says whether a fan or a link carries an active signal.
- ``at_purchase``: which rewards of a sale are held for review, decided while the sale
  is recorded.
- ``review``: the queue of held rewards and the admin's decisions on them.

What each signal does:

- ``shared_email`` / ``shared_address`` (at purchase time): the buyer and the level-1
  fan look like one person with two accounts — the same mailbox once e-mail aliases are
  folded (``+tags``, Gmail dots), or the purchase came from the address the level-1
  fan signed up from. Recorded on the level-1 reward, which is *held*.
- ``signup_farm`` (at sign-up time): most of a sponsor's recent sign-ups come from one
  address. Recorded on the sponsor.
- ``click_flood`` (scan): a link with many clicks from one address and no sales.
  Recorded on the link.
- ``storefront_burst`` (scan): a fan whose downline all buy through one storefront
  within minutes of signing up. Recorded on the fan.

The invariants:

- While a fan or link carries an *active* signal, every new reward it would earn is
  held too. A held reward never matures, so it stays out of payouts until an admin
  approves it (it then moves on as usual) or rejects it (its money goes back to the
  artist, as for a buyer's own position). Each reward is decided once, audited.
- An admin may clear a signal on a fan or a link, once, with a reason, audited (who,
  when, why). A cleared signal holds no new reward; rewards it already held stay held
  until decided. A signal on a reward is settled by deciding that reward, not cleared.
- Signals are never deleted or edited: a clearance is a row of its own beside the
  signal, so the history shows both.
"""
