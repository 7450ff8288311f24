"""Developer tooling shipped with the package, never used when serving: the local fake
Stripe (``fake_stripe``) that the tests talk to and ``royalties dev stripe`` runs."""
