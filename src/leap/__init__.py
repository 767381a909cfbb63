"""leap: Learning from Experts with Access to Privilege, as a framework."""

__version__ = "0.1.0"
