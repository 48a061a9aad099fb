"""runlane.sdk."""
