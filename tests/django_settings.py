"""URLs of tests/test_django.py's Django settings (configured by that module: ROOT_URLCONF)."""

from django.urls import include, path

urlpatterns = [path("runlane/", include("runlane.frameworks.django.urls"))]
