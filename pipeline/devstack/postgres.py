"""PostgreSQL 18 (+ pgvector) specifics: who runs it, initdb once, database bootstrap.

Contracts:
- PostgreSQL refuses to run as root. :func:`service_user` returns None for a
  normal user (postgres runs as that user) and, for root, the unprivileged
  system user :data:`SYSTEM_USER` (created with ``useradd --system`` if missing).
- :func:`prepare` makes ``<state>/postgres/data`` an initialised cluster owned by
  that user (``initdb`` with scram-sha-256 authentication for every connection,
  superuser named as the DSN user, its password read from a file that exists only
  while initdb runs), or raises :class:`PostgresSetupError` saying why (e.g. a
  parent directory that user cannot enter). initdb's output goes to the server's log file.
- :func:`bootstrap` sets the superuser's password to the stack's (idempotent: it
  follows a changed secret), turns any ``trust`` line of ``pg_hba.conf`` left by an
  older stack into ``scram-sha-256`` (and reloads), creates the DSN's database if
  missing and ``CREATE EXTENSION IF NOT EXISTS vector`` in it; idempotent.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import subprocess
from pathlib import Path

import asyncpg

from pipeline.devstack.errors import StackError
from pipeline.devstack.process import RunAs

SYSTEM_USER = "tickwire-pg"


class PostgresSetupError(StackError):
    """The cluster cannot be prepared; the message says what to change."""


def service_user() -> RunAs | None:
    """None if we are not root; else the unprivileged user postgres runs as (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", SYSTEM_USER]
        done = subprocess.run(cmd, capture_output=True, text=True)
        try:  # a concurrent `up` may have created it meanwhile
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresSetupError(
                f"running as root, postgres needs the unprivileged user {SYSTEM_USER!r}, "
                f"but `{' '.join(cmd)}` failed: {done.stderr.strip() or done.returncode}"
            ) from None
    return RunAs(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def blocked_ancestor(path: Path, user: RunAs) -> Path | None:
    """The first directory on the way to ``path`` that ``user`` cannot enter (by mode bits), or None."""
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return None  # will be created by (and for) us below
        if info.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return directory
    return None


def _check_reachable(path: Path, user: RunAs, what: str) -> None:
    blocked = blocked_ancestor(path, user)
    if blocked is not None:
        mode = stat.filemode(blocked.stat().st_mode)
        raise PostgresSetupError(
            f"PostgreSQL refuses to run as root, so it runs as {user.name!r}, but that user cannot enter "
            f"{blocked} ({mode}) on the way to {what} {path}. Put the state directory where it can "
            f"(e.g. TICKWIRE_STATE_DIR=/var/tmp/tickwire), or allow traversal: chmod o+x {blocked}"
        )


def data_dir(home: Path) -> Path:
    return home / "data"


def prepare(home: Path, bin_dir: Path, superuser: str, password: str, log_file: Path, run_as: RunAs | None,
            timeout: float) -> None:
    """Ensure ``home/data`` holds an initialised cluster owned by ``run_as`` (or by us)."""
    if run_as is not None:
        _check_reachable(bin_dir, run_as, "the PostgreSQL binaries")
        _check_reachable(home, run_as, "the data directory")
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    if run_as is not None:
        for path in (home, *home.rglob("*")):
            if path.lstat().st_uid != run_as.uid:
                os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
    if (data_dir(home) / "PG_VERSION").exists():
        return
    password_file = home / "initdb.pw"
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    if run_as is not None:
        os.chown(password_file, run_as.uid, run_as.gid)
    argv = [str(bin_dir / "initdb"), "-D", str(data_dir(home)), "--auth=scram-sha-256", f"--pwfile={password_file}",
            f"--username={superuser}", "--encoding=UTF8", "--locale=C", "--no-instructions"]  # fmt: skip
    with open(log_file, "ab") as log:
        log.write(f"--- initdb: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=home, timeout=timeout, user=run_as.uid if run_as else None,
                                  group=run_as.gid if run_as else None,
                                  extra_groups=[] if run_as else None)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise PostgresSetupError(f"initdb did not finish within {timeout:.0f} s") from None
        finally:
            password_file.unlink(missing_ok=True)
    if done.returncode != 0:
        raise PostgresSetupError(f"initdb failed with exit code {done.returncode}")


def server_argv(home: Path, bin_dir: Path, host: str, port: int) -> list[str]:
    """``postgres`` in the foreground: TCP on ``host`` only, unix socket in ``home``, log to stderr."""
    return [str(bin_dir / "postgres"), "-D", str(data_dir(home)), "-p", str(port),
            "-c", f"listen_addresses={host}", "-c", f'unix_socket_directories="{home}"',
            "-c", "logging_collector=off"]  # fmt: skip


def bootstrap(home: Path, host: str, port: int, user: str, password: str, database: str, timeout: float) -> None:
    """Secure and complete the cluster (see the module docstring); idempotent."""

    async def run() -> None:
        conn = await asyncpg.connect(host=host, port=port, user=user, password=password, database="postgres",
                                     timeout=timeout, ssl=False)
        try:
            await conn.execute(f"ALTER ROLE {_quoted(user)} PASSWORD {_literal(password)}")
            if _scram_only(data_dir(home) / "pg_hba.conf"):
                await conn.execute("SELECT pg_reload_conf()")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                quoted = '"' + database.replace('"', '""') + '"'
                try:
                    await conn.execute(f"CREATE DATABASE {quoted}")
                except asyncpg.DuplicateDatabaseError:
                    pass  # created concurrently
        finally:
            await conn.close()
        conn = await asyncpg.connect(host=host, port=port, user=user, password=password, database=database,
                                     timeout=timeout, ssl=False)
        try:
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except asyncpg.UniqueViolationError:
                pass  # created concurrently
        finally:
            await conn.close()

    asyncio.run(run())


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scram_only(hba: Path) -> bool:
    """Turn ``trust`` lines of ``pg_hba.conf`` (a cluster made by an older stack) into scram-sha-256; True if changed."""
    try:
        lines = hba.read_text().splitlines(keepends=True)
    except PermissionError:
        return False  # not ours to read (run as another user): initdb of this version already wrote scram
    changed = [line.replace(" trust", " scram-sha-256") if not line.lstrip().startswith("#") else line for line in lines]
    if changed == lines:
        return False
    hba.write_text("".join(changed))
    return True
