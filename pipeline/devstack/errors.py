"""Errors of the local stack."""

from __future__ import annotations


class StackError(RuntimeError):
    """Something about the local stack went wrong; the message is meant for a user."""


class StackConfigError(StackError, ValueError):
    """A setting cannot be served by the local stack; the message names it (``TICKWIRE_...``)."""
