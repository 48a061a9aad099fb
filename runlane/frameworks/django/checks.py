"""System checks: ``manage.py check`` (and ``runserver``, ``migrate``) report a bad
``settings.RUNLANE`` key by name, with ids ``runlane.E001`` (not a dict), ``runlane.E002``
(an unknown key), ``runlane.E003`` (a wrong type), ``runlane.E004`` (a value runlane refuses)."""

from __future__ import annotations

from typing import Any

from django.core import checks


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from runlane.frameworks.django import conf

    return [
        checks.Error(problem.message, hint=problem.hint, obj="settings.RUNLANE", id=problem.id)
        for problem in conf.state.problems
    ]


def register() -> None:
    checks.register(check_settings, "runlane")
