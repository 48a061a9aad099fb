"""runlane.backends."""
