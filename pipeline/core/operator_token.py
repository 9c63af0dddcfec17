"""The operator token: proof that a caller may use the worker's operator routes.

The worker writes a fresh random token to ``<state_dir>/worker.token`` (mode
0600) at start; local operator commands (``tickwire sql``) read it. Having the
token means having read access to the state directory, i.e. to the data.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SQL_ROUTE = "/internal/sql"


def token_path(state_dir: Path) -> Path:
    return state_dir / "worker.token"


def issue_token(state_dir: Path) -> str:
    """Write a new token (readable by the owner only) and return it."""
    path = token_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # a new file: an old one's mode never stays
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    temporary.replace(path)
    return token


def read_token(state_dir: Path) -> str | None:
    path = token_path(state_dir)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
