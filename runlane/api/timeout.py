"""``runlane.timeout.NONE``: pass as ``max_duration`` to turn the limit off."""

from runlane.core.options import TIMEOUT_NONE as NONE

__all__ = ["NONE"]
