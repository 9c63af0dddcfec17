"""No test or benchmark binds a fixed port, so `make test` (and `tickwire bench`) run beside a `make demo` stack
and worker (which hold 19092, 16379, 15432, 16380 and 6066).

Every port the tests and the bench listen on comes from the OS (bind to port 0) or from settings built with
free ports. Two checks: the sources of tests/ and bench/ never bind, serve or configure a literal port; and the
naive Faust contender starts its worker without Faust's web server (Faust's `worker` command turns it on by
default, on port 6066, whatever ``web_enabled`` the app was given).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT_KEYWORDS = {"port", "web_port", "api_port", "http_port"}
LISTENERS = {"bind", "create_server", "TCPSite", "run_app"}


def literal_ports(source: str) -> list[int]:
    """Lines that bind or serve a literal nonzero port, or pass one as a port keyword."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in LISTENERS and node.args:
            port = node.args[-1]
            if isinstance(port, ast.Tuple) and len(port.elts) == 2:  # bind((host, port))
                port = port.elts[1]
            if isinstance(port, ast.Constant) and isinstance(port.value, int) and port.value != 0:
                found.append(node.lineno)
        found += [node.lineno for keyword in node.keywords
                  if keyword.arg in PORT_KEYWORDS and isinstance(keyword.value, ast.Constant)
                  and isinstance(keyword.value.value, int) and keyword.value.value != 0]
    return found


def test_no_test_or_benchmark_binds_a_literal_port() -> None:
    sources = sorted([*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("bench").rglob("*.py")])
    assert len(sources) > 40
    hits = {str(path.relative_to(ROOT)): lines for path in sources if (lines := literal_ports(path.read_text()))}
    assert hits == {}


def test_the_scan_finds_a_literal_port() -> None:
    code = ("import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 6066))\napp(web_port=6066)\n"
            "s.bind(('127.0.0.1', 0))\nweb.TCPSite(runner, '127.0.0.1', settings.api_port)\n")
    assert literal_ports(code) == [3, 4]


def test_the_naive_faust_contender_runs_its_worker_without_the_web_server() -> None:
    import faust.cli.worker  # noqa: F401 - registers the `worker` command
    from faust.cli.base import cli

    tree = ast.parse((ROOT / "bench" / "faust_naive.py").read_text())
    (value,) = [node.value for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "sys.argv"]
    assert isinstance(value, ast.List) and ast.unparse(value.elts[0]) == "sys.argv[0]"
    argv = [ast.literal_eval(element) for element in value.elts[1:]]
    assert argv[0] == "worker"
    params = cli.commands["worker"].make_context("worker", argv[1:]).params
    # faust.cli.worker sets app.conf.web_enabled = with_web before the worker starts
    assert params["with_web"] is False, argv
