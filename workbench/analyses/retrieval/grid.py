"""The default needle-in-a-haystack grid: the one place it is typed (light: no torch)."""

DEFAULT_LENGTHS = (500, 1000)  # context lengths in tokens
DEFAULT_DEPTHS = (0, 50, 100)  # needle depths in %
