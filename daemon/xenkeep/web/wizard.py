"""The first-boot wizard as an ordered list of steps.

Each feature registers its own step (the pool connection, the network, the
backup storage...). A step says whether it is done, what its page shows and
what its form does; the wizard always sends the admin to the first step
that is not done, so a browser closed halfway resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from xenkeep.errors import ConflictError

StepCheck = Callable[[web.Request], Awaitable[bool]]
StepContext = Callable[[web.Request], Awaitable[dict[str, Any]]]
# A submit may return cookies to set on the redirect that follows it.
StepSubmit = Callable[[web.Request, Mapping[str, str]], Awaitable[Mapping[str, str] | None]]


@dataclass(frozen=True, slots=True)
class WizardStep:
    """One page of the wizard.

    ``needs_admin`` steps come after the administrator exists and require a
    signed-in admin; the others run on the strength of the setup token.
    ``submit`` raises :class:`xenkeep.errors.ValidationError` to show the
    form again with a message.
    """

    name: str
    title: str
    template: str
    needs_admin: bool
    is_done: StepCheck
    context: StepContext
    submit: StepSubmit
    order: int = 100
    skippable: bool = False
    description: str = field(default="")


class Wizard:
    """The registered steps, in order."""

    def __init__(self) -> None:
        self._steps: list[WizardStep] = []

    def register(self, step: WizardStep) -> None:
        """Add a step; steps are kept sorted by ``order`` then registration."""
        if any(s.name == step.name for s in self._steps):
            raise ConflictError(f"wizard step {step.name!r} registered twice")
        self._steps.append(step)
        self._steps.sort(key=lambda s: s.order)

    @property
    def steps(self) -> list[WizardStep]:
        """Every step in order."""
        return list(self._steps)

    def get(self, name: str) -> WizardStep | None:
        """A step by name."""
        return next((s for s in self._steps if s.name == name), None)

    async def current(self, request: web.Request) -> WizardStep | None:
        """The first step not yet done, or None when the wizard is finished."""
        for step in self._steps:
            if not await step.is_done(request):
                return step
        return None

    async def progress(self, request: web.Request) -> list[dict[str, Any]]:
        """Every step with its state, for the wizard's step list and the API."""
        current = await self.current(request)
        out = []
        for step in self._steps:
            out.append(
                {
                    "name": step.name,
                    "title": step.title,
                    "done": await step.is_done(request),
                    "current": current is not None and step.name == current.name,
                }
            )
        return out
