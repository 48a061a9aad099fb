"""A Flask app with runlane: ``Runlane(app)``, a page that triggers a task and shows its
progress, and ``flask runlane worker`` executing it inside the app's context (see app.py)."""
