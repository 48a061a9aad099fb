"""The heart of runlane: task model, run state machine, engine and executor.

``core`` imports no broker, Redis client or web framework; backends plug in through the
``Store`` and ``Broker`` protocols of :mod:`runlane.core.types`.
"""
