"""Exceptions raised by the Mass client.

Every error the mesh reports carries the server's own sentence (the
``error`` field of its JSON answer) in the exception's message, so what a
node said is what the caller reads.

Hierarchy::

    MassError
    ├── NoNodeAnswered      no listed node gave a usable answer
    ├── BadRequest          4xx: the request is wrong, another node would say the same
    │   ├── NotFound        404
    │   └── Conflict        409
    ├── Unauthorized        401 / 403: no token, unknown token, or too weak a role
    ├── JobFailed           a job or study ended failed or cancelled
    └── WaitTimeout         a wait ran past its timeout (also a TimeoutError)
"""

from __future__ import annotations

from typing import Any, List, Optional


class MassError(Exception):
    """Base class of every error the client raises.

    Attributes:
        message: what went wrong, with the server's text when a node answered.
        status: the HTTP status of the answer, when there was one.
        url: the URL that answered, when there was one.
    """

    def __init__(self, message: str, *, status: Optional[int] = None, url: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url

    def __str__(self) -> str:
        if self.status is not None and self.url:
            return f"{self.message} ({self.status} from {self.url})"
        return self.message


class NoNodeAnswered(MassError):
    """No listed node answered usably: each was unreachable, timed out, or
    answered with a server error (after bounded retries on 503/429).

    ``attempts`` lists, per try, the node and what happened there.
    """

    def __init__(self, attempts: List[str]) -> None:
        self.attempts = list(attempts)
        super().__init__("no node answered: " + "; ".join(self.attempts))


class BadRequest(MassError):
    """A 4xx answer (400, 404, 409, 413, 422, ...): the request itself is
    wrong, so the client does not try another node. The message is the
    node's sentence naming what is wrong."""


class NotFound(BadRequest):
    """404: no such model, dataset, job, version or endpoint."""


class Conflict(BadRequest):
    """409: the request conflicts with the state (e.g. nothing to roll back to,
    a job already over)."""


class Unauthorized(MassError):
    """401 (no token, or one the node does not know) or 403 (the token's role
    is too weak for the call)."""


class JobFailed(MassError):
    """A job (or study) ended ``failed`` or ``cancelled``.

    Attributes:
        id: the job or study id.
        state: ``"failed"`` or ``"cancelled"``.
        reason: the failure's reason as the mesh recorded it (``None`` when cancelled).
        record: the last record read (a dict, as ``GET /v1/jobs/{id}`` answers).
    """

    def __init__(self, what: str, id: str, state: str, reason: Optional[str], record: Any) -> None:
        self.id = id
        self.state = state
        self.reason = reason
        self.record = record
        detail = f"failed: {reason}" if state == "failed" else "was cancelled"
        super().__init__(f"{what} {id} {detail}")


class WaitTimeout(MassError, TimeoutError):
    """A wait for a job or study ran past its timeout (the job runs on)."""
