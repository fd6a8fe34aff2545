"""The background service: scheduled scans, the pull endpoint, pushes."""
