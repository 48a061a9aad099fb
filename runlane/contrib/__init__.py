"""runlane.contrib."""
