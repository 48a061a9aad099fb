"""The framework-neutral HTTP layer: the management API (``api``), its authentication
(``auth``), its JSON shapes (``shapes``), its routes (``routes``), and servers (``servers``)."""
