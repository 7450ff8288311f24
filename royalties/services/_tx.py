"""The one commit/rollback wrapper every service uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from royalties.errors import Conflict

P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def unit_of_work(session: Session) -> Iterator[Session]:
    """Commit when the block succeeds; roll back on any exception and re-raise it.

    A uniqueness race lost to a concurrent request surfaces as ``Conflict`` rather than
    as a database error.
    """
    try:
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("the request conflicts with a concurrent change; retry it") from exc
    except BaseException:
        session.rollback()
        raise


def transactional(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a service function (session first) inside :func:`unit_of_work`."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        session = args[0]
        assert isinstance(session, Session)
        with unit_of_work(session):
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper
