"""appban: keep banned apps off government devices."""

__version__ = "0.1.0"
