"""Errors that reach the user as one clear line and exit code 2."""


class GancraftError(Exception):
    """A problem with the user's input (file, option, value). The CLI prints it and exits 2."""


class CheckpointError(GancraftError):
    """A checkpoint that cannot be read, is unsafe, or cannot be rebuilt."""
