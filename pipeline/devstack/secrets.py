"""The local stack's passwords: generated once into ``<state_dir>/secrets/`` (mode 0700, files 0600).

Contract: :func:`passwords` returns the password of each password-protected
server (cache, graph, PostgreSQL): the one the settings already hold
(``TICKWIRE_CACHE_PASSWORD`` etc., from the environment, ``.env`` or a
secrets file), else one generated now and written to
``<state_dir>/secrets/tickwire_<server>_password``, where
:func:`pipeline.config.load_settings` finds it (so every later process of
this state directory connects with it). A password is never put on a
command line.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.config import Settings

#: server -> the setting holding its password
PASSWORD_SETTINGS = {"cache": "cache_password", "graph": "graph_password", "postgres": "postgres_password"}


def secret_file(state_dir: Path, setting: str) -> Path:
    return Path(state_dir).expanduser().resolve() / "secrets" / f"tickwire_{setting}"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing any earlier file and its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def passwords(settings: Settings, *, generate: bool = True) -> dict[str, str]:
    """server -> its password (see the module docstring); without ``generate``, a missing one is empty (nothing
    is written: ``status`` and ``down`` leave a state directory as they found it)."""
    found: dict[str, str] = {}
    for server, setting in PASSWORD_SETTINGS.items():
        value = getattr(settings, setting)
        if value is not None:
            found[server] = value.get_secret_value()
            continue
        path = secret_file(settings.state_dir, setting)
        if path.exists():
            found[server] = path.read_text().strip()
            continue
        if not generate:
            found[server] = ""
            continue
        found[server] = secrets.token_urlsafe(24)
        write_private(path, found[server])
    return found
