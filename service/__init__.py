"""Stickyloop's web service: HTTP -> use cases -> store -> the domain packages."""
