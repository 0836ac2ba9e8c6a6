"""The embedded-default demo (``make demo``): sample sources and a driver. Not part of the package."""
