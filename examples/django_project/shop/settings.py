"""Settings of the example project: runlane on Redis, the orders in PostgreSQL (or SQLite)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "runlane.frameworks.django",
    "orders",  # its tasks.py is discovered by runlane's app
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]

# PostgreSQL when EXAMPLE_DB_NAME is set (PGHOST, PGUSER, PGPASSWORD as libpq reads them),
# else a SQLite file next to manage.py
if os.environ.get("EXAMPLE_DB_NAME"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["EXAMPLE_DB_NAME"],
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "ATOMIC_REQUESTS": True,  # a view's triggers are created when its transaction commits
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "ATOMIC_REQUESTS": True,
        }
    }

RUNLANE = {
    "STORE_URL": os.environ.get("RUNLANE_STORE_URL", "redis://localhost:6379/0"),
    "ENVIRONMENT": "dev",
    # the API under /runlane/ answers this key (rl_<environment>_<40 letters and digits>)
    "SECRET_KEY": os.environ.get("RUNLANE_SECRET_KEY", "rl_dev_" + "0" * 40),
}
