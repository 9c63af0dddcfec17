"""``tickwire config``: the effective settings, where each came from, secrets masked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import click
from pydantic import SecretStr
from rich.table import Table
from rich.text import Text

from pipeline.cli.console import out_json, print_table
from pipeline.cli.console import settings as cli_settings
from pipeline.config import ENV_PREFIX, Settings, masked, secrets_dirs

MASK = "***"
#: Query parameters of a URL that carry a secret (libpq takes ``?password=``, some clients a token or key).
SECRET_PARAMETERS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_key", "secret_key")


def _mask_query(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name.lower() in SECRET_PARAMETERS for name, _ in pairs):
        return url
    query = urlencode([(name, MASK if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs], safe="*/:")
    return urlunsplit(parts._replace(query=query))


def mask_urls(value: str) -> str:
    """``value`` (one URL, or several separated by commas) with every password masked: in the authority
    (:func:`pipeline.config.masked`) and in query parameters such as ``?password=``."""
    shown = []
    for part in value.split(","):
        try:
            shown.append(_mask_query(masked(part)))
        except ValueError:  # not parseable as a URL: show nothing of it rather than a secret
            shown.append(MASK)
    return ",".join(shown)


def shown_value(value: Any) -> Any:
    """A setting's value as ``config`` shows it: secrets masked (``***``; an empty secret stays empty: it
    tells nothing), paths as text."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return mask_urls(value)
    return value


def _dotenv_names(settings: Settings) -> set[str]:
    env_file = Settings.model_config.get("env_file")
    if not isinstance(env_file, (str, Path)) or not Path(env_file).is_file():
        return set()
    from dotenv import dotenv_values

    return {name.upper() for name in dotenv_values(env_file)}


def sources(settings: Settings) -> dict[str, str]:
    """Where each setting's value came from, by field name: ``environment``, ``.env``, ``secrets file PATH``
    or ``default`` (in that order of priority, as :func:`pipeline.config.load_settings` reads them)."""
    environment = {name.upper() for name in os.environ}
    dotenv = _dotenv_names(settings)
    secret_files: dict[str, Path] = {}
    for directory in secrets_dirs(settings.state_dir):  # lowest priority first: a later directory wins
        try:
            secret_files.update({path.name.upper(): path for path in directory.iterdir() if path.is_file()})
        except OSError:
            continue
    found = {}
    for name in Settings.model_fields:
        variable = f"{ENV_PREFIX}{name.upper()}"
        if variable in environment:
            found[name] = "environment"
        elif variable in dotenv:
            found[name] = ".env"
        elif variable in secret_files:
            found[name] = f"secrets file {secret_files[variable]}"
        else:
            found[name] = "default"
    return found


@click.command("config", epilog="""\b
--json prints one JSON document: {"TICKWIRE_X": {"value": ..., "source": ...}, ...}
in the order of the table (value null when unset).
Exit codes: 0 ok; 2 invalid settings (the line names each bad one).""")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (see below).")
def config_command(as_json: bool) -> None:
    """The effective settings: every TICKWIRE_ variable, its value and where it came from (environment, .env,
    a secrets file, or the default). Secrets are masked (***), passwords inside URLs too."""
    settings = cli_settings()
    where = sources(settings)
    values = {name: shown_value(getattr(settings, name)) for name in Settings.model_fields}
    if as_json:
        out_json({f"{ENV_PREFIX}{name.upper()}": {"value": value, "source": where[name]} for name, value in values.items()})
        return
    table = Table("setting", "value", "from")
    for name, value in values.items():
        text = Text("(unset)", style="dim") if value is None else Text(str(value).lower() if isinstance(value, bool) else str(value))
        source = where[name]
        table.add_row(Text(f"{ENV_PREFIX}{name.upper()}"), text, Text(source, style="dim" if source == "default" else "cyan"))
    print_table(table)
