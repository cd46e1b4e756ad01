"""strangler: the toolkit's front door, the ``strangler`` command and ``strangler demo``."""
