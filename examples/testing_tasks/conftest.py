# the testing kit's fixtures (runlane_memory, runlane_clock) for the tests next to this file
pytest_plugins = ["runlane.testing"]
