"""What every service shares: refusals of records outside the caller's clinic are audited.

A repository answers "not found in your clinic" for another clinic's id exactly as for an unknown one
(no existence leaks). The service layer, which knows who asked, records each such refusal in the
audit trail: the operation, and the ids asked for when they are well-formed (anything else is
counted, never echoed, so a hostile or huge "id" cannot fill the trail).
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Callable
from typing import Any

from core.errors import NotFoundError
from core.permissions import Actor

_OBJECT_ID = re.compile(r"[0-9a-f]{24}")
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("service_depth", default=0)


def _refused(operation: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _depth.set(_depth.get() + 1)
        try:
            return function(self, *args, **kwargs)
        except NotFoundError as exc:
            actor = next((a for a in (*args, *kwargs.values()) if isinstance(a, Actor)), None)
            if actor is not None and _depth.get() == 1:  # once, where the caller asked
                self._record_refusal(actor, operation, [*args, *kwargs.values()], exc)
            raise
        finally:
            _depth.reset(token)

    return call


class ServiceBase:
    """Wraps the public methods of a service so "not found in your clinic" refusals are audited."""

    _infra: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if not name.startswith("_") and callable(member) and not isinstance(member, staticmethod | classmethod):
                setattr(cls, name, _refused(f"{cls.__name__}.{name}", member))

    def _record_refusal(self, actor: Actor, operation: str, arguments: list[Any], error: NotFoundError) -> None:
        asked = [a for a in arguments if isinstance(a, str)]
        ids = [a for a in asked if _OBJECT_ID.fullmatch(a)][:5]
        details: dict[str, Any] = {"operation": operation, "ids": ids,
                                   "reason": "not in the caller's clinic, or not visible to their role"}
        if len(ids) < len(asked) and any(not _OBJECT_ID.fullmatch(a) for a in asked if len(a) >= 12):
            details["malformedIds"] = sum(1 for a in asked if len(a) >= 12 and not _OBJECT_ID.fullmatch(a))
        self._infra.audit.append(actor.clinic_id, action="access.refused", outcome="refused", user_id=actor.id,
                                 role=actor.role.value, details=details)
