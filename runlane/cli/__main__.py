"""``python -m runlane.cli`` (the same as the ``runlane`` command)."""

from runlane.cli import main

if __name__ == "__main__":
    main(prog_name="runlane")
