"""Reporting: building reports and rendering them for people and machines."""
