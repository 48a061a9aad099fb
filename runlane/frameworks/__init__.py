"""runlane.frameworks."""
