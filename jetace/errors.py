"""Exceptions raised by jetace for problems in the user's input."""

from __future__ import annotations

__all__ = ["JetaceError", "InputError", "ModelFileError"]


class JetaceError(Exception):
    """Base class: a problem the user can fix (bad file, bad option); the CLI prints it."""


class InputError(JetaceError, ValueError):
    """A file, tree, branch or array that cannot be read as jets; the message names it."""


class ModelFileError(JetaceError, ValueError):
    """A model file that is missing, corrupted or of another format version."""
