"""What the worker runs: a job is a name, how often it is due and one round of work.

The shared interface of ``royalties worker`` (issue 14): the worker calls ``run(engine,
config, now)`` about every ``every``; a round opens its own sessions, owns its commits
and returns how many things it did (0: idle). ``config`` holds plain values (the CLI
passes the app's config), so nothing here imports Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class Job:
    name: str  # e.g. "webhooks.deliver", "rewards.mature"
    every: timedelta  # how often it is due
    run: Callable[[Engine, Mapping[str, Any], datetime], int]
