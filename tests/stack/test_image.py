"""What the Dockerfile builds runs: the image's install, made without Docker, serves a worker and `tickwire api`.

No Docker engine runs here, so the image is built the way its Dockerfile says, in a fresh virtual environment:
the build context is the checkout less what .dockerignore excludes; each COPY line copies from that context
into a directory standing for WORKDIR /app; each ``RUN pip install`` line runs there with the venv's pip
(``--require-hashes`` on requirements/worker.lock, then the project with ``--no-deps``, not editable; pip may
use its cache); the image's ENV applies, with /app mapped to that directory. So the lock must install on its
own and hold what the worker imports, and the image must work without bench/, tests/ or the checkout.

The one addition is chDB, which the image does not carry (its analytics is a ClickHouse server) but the local
stack uses (there is no ClickHouse server here): it is installed into the venv after the image's steps.

Then, from that venv and with a working directory outside the checkout: ``tickwire worker`` (the image's CMD)
on the session's stack, with its own group, state and chDB directories and a free port, until ``/health``
answers 200 and the image's HEALTHCHECK command passes; it is stopped; then ``tickwire api`` on the chDB
directory the worker left, likewise.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO

import pytest

from pipeline.config import Settings, load_settings
from pipeline.devstack.worker_process import settings_env
from tests.api_support import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ROOT = "/app"
PIP_TIMEOUT_S = 1200


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def ignore_rules() -> list[re.Pattern[str]]:
    """.dockerignore as regular expressions over context-relative paths (Docker's matching: ``*`` and ``?`` within a
    path segment, ``**`` across them; a pattern that matches a directory excludes everything under it)."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        assert not pattern.startswith("!"), "exceptions are not handled here"
        pattern = pattern.strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        rules.append(re.compile(regex + r"\Z"))
    return rules


def build_context(destination: Path) -> Path:
    """The checkout as Docker sends it: every file .dockerignore does not exclude."""
    rules = ignore_rules()

    def ignored(relative: str) -> bool:
        return any(rule.match(relative) for rule in rules)

    for directory, subdirectories, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT)
        subdirectories[:] = [d for d in subdirectories if not ignored((base / d).as_posix())]
        for name in files:
            relative = (base / name).as_posix()
            if not ignored(relative):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, destination / relative)
    return destination


def image_path(value: str, app: Path) -> str:
    return str(app / value.removeprefix(IMAGE_ROOT + "/")) if value.startswith(IMAGE_ROOT + "/") else value


def clean_env(**extra: str) -> dict[str, str]:
    """The machine's environment without anything that would reach into the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TICKWIRE_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


class Image:
    """The image's filesystem, made by following the Dockerfile: a venv and the /app directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.app = root / "app"
        self.context = build_context(root / "context")
        self.env: dict[str, str] = {}
        self.copied: list[str] = []
        self.timings: dict[str, float] = {}

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def build(self) -> None:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
        self.timings["venv"] = time.monotonic() - started
        workdir: Path | None = None
        for name, args in instructions():
            if name == "WORKDIR":
                assert args == IMAGE_ROOT, "the image is built in /app"
                workdir = self.app
                workdir.mkdir(parents=True, exist_ok=True)
            elif name == "COPY":
                assert workdir is not None and not args.startswith("--")
                *sources, target = shlex.split(args)
                self.copy(sources, target, workdir)
            elif name == "RUN":
                self.run(args, workdir)
            elif name == "ENV":
                self.env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
        self.timings["image"] = time.monotonic() - started

    def copy(self, sources: list[str], target: str, workdir: Path) -> None:
        destination = workdir / target
        into_directory = target.endswith("/") or len(sources) > 1
        for source in sources:
            path = self.context / source
            assert path.exists(), f"COPY {source}: not in the build context (excluded by .dockerignore?)"
            self.copied.append(source)
            if path.is_dir():
                shutil.copytree(path, destination, dirs_exist_ok=True)
            else:
                file_destination = destination / path.name if into_directory else destination
                file_destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, file_destination)

    def run(self, command: str, workdir: Path | None) -> None:
        words = shlex.split(command)
        if words[:2] != ["pip", "install"]:
            # creating the user and the state directory needs root and changes nothing installed
            assert words[0] == "useradd" and "install -d" in command, f"unexpected RUN: {command}"
            return
        assert workdir is not None
        started = time.monotonic()
        # the image's PIP_NO_CACHE_DIR is left out on purpose: the test may use pip's cache
        done = subprocess.run([str(self.python), "-m", "pip", *words[1:]], cwd=workdir, env=clean_env(),
                              capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        assert done.returncode == 0, f"RUN {command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        self.timings[command] = time.monotonic() - started

    def command(self, argv: list[str]) -> list[str]:
        """A command of the image (``tickwire ...``, ``python ...``) run from this venv."""
        return [str(self.venv / "bin" / argv[0]), *argv[1:]]


def local_extra_pin(name: str) -> str:
    local = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    (pin,) = [item for item in local if re.match(rf"{name}\s*==", item)]
    return pin


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    built = Image(tmp_path_factory.mktemp("image"))
    built.build()
    started = time.monotonic()
    done = subprocess.run([str(built.python), "-m", "pip", "install", local_extra_pin("chdb")], env=clean_env(),
                          capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    built.timings["chdb (local stack only)"] = time.monotonic() - started
    print("\nimage venv built:", json.dumps({k: round(v, 1) for k, v in built.timings.items()}, indent=1))
    return built


def healthcheck(image: Image) -> list[str]:
    (args,) = [args for name, args in instructions() if name == "HEALTHCHECK"]
    return image.command(json.loads(args[args.index("CMD") + 3:].strip()))


def status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def start(image: Image, argv: list[str], env: dict[str, str], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(image.command(argv), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def serve_until_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path, what: str) -> None:
    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        return status(port) == 200

    wait_until(healthy, timeout_s=180, what=f"{what} from the image venv to answer /health with 200")


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def test_the_image_holds_what_the_dockerfile_copies_and_neither_bench_nor_tests(image: Image) -> None:
    assert sorted(image.copied) == sorted(["requirements/worker.lock", "pyproject.toml", "README.md", "pipeline", "agents",
                                           "schemas", "topics.yaml"])
    for excluded in ("bench", "tests", "docs", "examples", ".venv", ".git"):
        assert not (image.context / excluded).exists(), excluded
    assert not list(image.context.rglob("__pycache__"))
    probe = subprocess.run(
        [str(image.python), "-c", "import importlib.util as u, pipeline, agents; "
                                  "print(u.find_spec('bench'), u.find_spec('tests'), pipeline.__file__, agents.__file__)"],
        cwd=image.root, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    bench, tests, pipeline_file, agents_file = probe.stdout.split()
    assert bench == tests == "None"
    site = str(image.venv / "lib")
    assert pipeline_file.startswith(site) and agents_file.startswith(site), "installed, not editable"
    assert not list(image.venv.glob("lib/python3*/site-packages/__editable__*"))
    # the catalog and schemas the image's ENV points at are where the COPY lines put them
    assert Path(image_path(image.env["TICKWIRE_TOPICS_FILE"], image.app)).is_file()
    assert Path(image_path(image.env["TICKWIRE_SCHEMAS_DIR"], image.app), "tick.v1.json").is_file()
    # the web console's files are package data of the install (GET /console serves them from there)
    console = subprocess.run(
        [str(image.python), "-c", "from pipeline.api import console_page as c; import pipeline.api as a; "
                                  "print(a.__file__, c.page_bytes().count(b'?v='), "
                                  "min(len(c._read(f)) for f, _ in c.ASSETS.values()))"],
        cwd=image.root, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert console.returncode == 0, console.stderr
    api_file, versioned, smallest = console.stdout.split()
    assert api_file.startswith(site) and int(versioned) >= 4 and int(smallest) > 0


def test_the_worker_and_tickwire_api_from_the_image_serve_health(image: Image, stack_settings: Settings,
                                                                 tmp_path: Path) -> None:
    group = "image-" + uuid.uuid4().hex[:8]
    settings = load_settings(**{**stack_settings.model_dump(), "group_id": group, "app_id": group + "-app",
                                "clickhouse_dsn": f"chdb://{tmp_path / 'clickhouse'}", "state_dir": tmp_path / "state",
                                "api_port": free_port()})
    # the image's ENV (its catalog and schemas), then this test's stack, state, chDB directory and port
    image_env = {name: image_path(value, image.app) for name, value in image.env.items()}
    env = clean_env(**{name: value for name, value in image_env.items() if not name.startswith("TICKWIRE_")})
    env.update({name: value for name, value in image_env.items() if name.startswith("TICKWIRE_")})
    env.update({name: value for name, value in settings_env(settings).items()
                if name not in ("TICKWIRE_TOPICS_FILE", "TICKWIRE_SCHEMAS_DIR")})
    env["TICKWIRE_API_HOST"] = "127.0.0.1"
    cwd = tmp_path / "cwd"  # outside the checkout: nothing of it can be imported or read
    cwd.mkdir()
    check = healthcheck(image)
    assert subprocess.run(check, env=env, cwd=cwd, capture_output=True, timeout=30).returncode != 0, "nothing serves yet"

    (cmd,) = [json.loads(args) for name, args in instructions() if name == "CMD"]
    worker_log = tmp_path / "worker.log"
    with open(worker_log, "wb") as log:
        started = time.monotonic()
        worker = start(image, cmd, env, cwd, log)
        try:
            serve_until_healthy(worker, settings.api_port, worker_log, "tickwire worker")
            ready_s = time.monotonic() - started
            assert subprocess.run(check, env=env, cwd=cwd, capture_output=True, timeout=30).returncode == 0
        finally:
            worker_code = stop(worker)
    assert worker_code == 0, worker_log.read_text()[-4000:]

    api_env = {**env, "TICKWIRE_API_PORT": str(free_port())}
    api_log = tmp_path / "api.log"
    with open(api_log, "wb") as log:
        started = time.monotonic()
        api = start(image, ["tickwire", "api"], api_env, cwd, log)
        try:
            serve_until_healthy(api, int(api_env["TICKWIRE_API_PORT"]), api_log, "tickwire api")
            api_ready_s = time.monotonic() - started
            assert subprocess.run(check, env=api_env, cwd=cwd, capture_output=True, timeout=30).returncode == 0
        finally:
            api_code = stop(api)
    assert api_code == 0, api_log.read_text()[-4000:]
    print(f"\nworker healthy after {ready_s:.1f} s, tickwire api after {api_ready_s:.1f} s")
