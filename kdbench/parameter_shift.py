"""Deprecated: the parameter-shift toolkit is part of the SDK now; import it from `kdbench`."""

from kdbench._moved import moved_to_sdk

__getattr__ = moved_to_sdk(__name__)
