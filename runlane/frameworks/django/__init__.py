"""runlane's Django app: ``INSTALLED_APPS += ["runlane.frameworks.django"]``.

- settings: one ``RUNLANE = {...}`` dict (``conf``), read when the app is ready and again on
  ``setting_changed`` (``override_settings`` works); system checks name a bad key (``checks``);
- the ``tasks`` modules of installed apps are imported (as Celery's ``autodiscover_tasks``);
- ``path("runlane/", include("runlane.frameworks.django.urls"))`` serves the management API;
- ``python manage.py runlane worker|trigger|runs …|schedules …``;
- a run triggered inside ``transaction.atomic()`` is created when the transaction commits and
  never if it rolls back (``transactions``); ``trigger(..., on_commit=False)`` opts out;
- ``close_old_connections()`` before and after each run a worker executes.

See docs/django.md.
"""

default_app_config = "runlane.frameworks.django.apps.RunlaneConfig"  # (Django < 3.2)
