"""What one user may ask of the shared generation queue, and the refusals when they ask for more.

The server's admin sets two numbers for users who are not admins (``--user-max-queued``,
``--user-max-tokens``); :class:`UserLimits` carries them to :meth:`Generator.submit
<webui.generation.scheduler.Generator.submit>`, which checks them when the job is queued (under
the queue's lock, so two requests sent at once cannot both take the last place).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from webui.errors import QuotaError, UserLimitError
from webui.params import SamplingParams


@dataclass(frozen=True)
class UserLimits:
    """One user's limits (0: no limit). The default, ``UserLimits()``, limits nothing (admins, no log-in)."""

    #: Generations the user may have running or waiting at once.
    max_queued: int = 0
    #: Most new tokens the user may ask for in one request.
    max_tokens: int = 0


#: No limits: admins, and everyone when the server has no log-in and no API keys.
NO_LIMITS = UserLimits()


def check_tokens(params: SamplingParams, limits: UserLimits) -> None:
    """Refuse ``params`` asking for more new tokens than ``limits`` allow (a 400: waiting does not help)."""
    if limits.max_tokens and params.max_tokens > limits.max_tokens:
        raise UserLimitError(
            f"This request asks for up to {params.max_tokens} new tokens, and the most one request may ask for "
            f"on this server is {limits.max_tokens} (set by the server's admin). Ask for {limits.max_tokens} "
            "tokens or fewer (max_tokens, or Max new tokens in the page), or ask the admin for a higher limit."
        )


def check_choices(n: int, limits: UserLimits) -> None:
    """Refuse a request for ``n`` answers at once that the queue limit could never take (a 400, not a 429)."""
    if limits.max_queued and n > limits.max_queued:
        raise UserLimitError(
            f"This request asks for {n} answers at once (n), and one user may have at most {limits.max_queued} "
            f"generations running or waiting on this server (set by the server's admin). Ask for "
            f"{limits.max_queued} or fewer, or send them one after the other."
        )


def check_queued(queued: int, limits: UserLimits, retry_after: float) -> None:
    """Refuse one more job for a user who already has ``queued`` jobs running or waiting (a 429).

    ``retry_after``: seconds until the user's first job should be done (an estimate).
    """
    if limits.max_queued and queued >= limits.max_queued:
        seconds = max(1, math.ceil(retry_after))
        jobs = "generation" if queued == 1 else "generations"
        raise QuotaError(
            f"You already have {queued} {jobs} running or waiting, the most one user may have at once on this "
            f"server (set by the server's admin). Wait for one to finish (about {seconds} s) and try again.",
            retry_after=seconds,
        )
