"""``path("runlane/", include("runlane.frameworks.django.urls"))``: runlane's management API
(Trigger.dev's routes, runlane's own, ``/healthz``, ``/api/openapi.json``) under that prefix,
authenticated with the environment's secret key (``RUNLANE["SECRET_KEY"]``)."""

from django.urls import re_path

from runlane.frameworks.django.views import api_view

app_name = "runlane"
urlpatterns = [re_path(r"^(?P<rest>.*)$", api_view, name="api")]
