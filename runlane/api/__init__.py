"""The public namespaces (``runlane.runs``, ``runlane.tasks`` …), thin over the engine."""
