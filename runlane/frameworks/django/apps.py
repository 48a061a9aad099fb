"""The app: configures runlane from ``settings.RUNLANE`` when Django is ready, imports the
installed apps' ``tasks`` modules, and installs the on-commit deferral and the database
connection hooks."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from django.apps import AppConfig, apps
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import module_has_submodule

from runlane.core import deferral
from runlane.core.runtime import Runtime

log = logging.getLogger("runlane.django")


class RunlaneConfig(AppConfig):
    name = "runlane.frameworks.django"
    label = "runlane"
    verbose_name = "runlane"
    default = True

    def ready(self) -> None:
        from runlane.frameworks.django import checks, conf, transactions

        checks.register()
        setting_changed.connect(_reload, dispatch_uid="runlane.frameworks.django.settings")
        deferral.add_deferrer(transactions.defer_on_commit)
        conf.load()
        if not conf.state.problems:
            autodiscover()


def _reload(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` (``override_settings``): configure runlane again from the new dict."""
    if setting == "RUNLANE":
        from runlane.frameworks.django import conf

        conf.load()


def autodiscover() -> list[str]:
    """Import the ``tasks`` module of every installed app that has one (as Celery's
    ``autodiscover_tasks``) and the modules of ``RUNLANE["TASK_MODULES"]``, defining their tasks
    in this process. Returns the modules imported. An app whose ``tasks`` module fails to import
    raises, as Django does for its models."""
    from runlane.frameworks.django import conf

    found: list[str] = []
    if conf.state["AUTODISCOVER"]:
        for config in apps.get_app_configs():
            if config.module is not None and module_has_submodule(config.module, "tasks"):
                name = f"{config.name}.tasks"
                importlib.import_module(name)
                found.append(name)
    for name in conf.state["TASK_MODULES"]:
        importlib.import_module(name)
        found.append(name)
    return found


def refuse() -> Runtime:
    """The runtime factory while ``settings.RUNLANE`` is bad: every use of runlane says why."""
    from runlane.frameworks.django import conf

    problem = conf.state.problems[0]
    raise ImproperlyConfigured(f"{problem.message} ({problem.id}; see `manage.py check`)")


def restore_default_factory() -> None:
    from runlane import config
    from runlane.core import runtime

    runtime.set_default_factory(config._default_runtime)
