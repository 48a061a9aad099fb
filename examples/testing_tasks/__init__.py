"""A sign-up flow's tasks and their tests with runlane's testing kit (docs/testing.md)."""
