"""Telling people things: email today (``mail``), fan notifications later."""
