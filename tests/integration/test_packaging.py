"""Packaging: a server install (``tidings[server]``) runs the server without the client's, the
app's or the media libraries, and the container recipe (Dockerfile) makes a working server.

The server-only venv is real: ``build/server-venv`` gets the core and ``server`` requirements
of pyproject.toml and nothing else (cached, rebuilt when those requirements change), and runs
``src/`` from this checkout. Docker is used where a daemon answers; without one the Dockerfile
is checked statically and its CMD and HEALTHCHECK are run here, in the server-only venv, which
is what the image's ``pip install .[server]`` makes.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata
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
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
VENV = ROOT / "build" / "server-venv"
DOCKERFILE = ROOT / "Dockerfile"
#: what a server install must not have
CLIENT_ONLY = ("nacl", "kivy", "PIL", "av", "numpy", "argon2", "zxcvbn", "kyber_py", "blurhash")
#: the modules a server install runs: the server, its command line and what they import
SERVER_ROOTS = ("tidings.server", "tidings.command", "tidings.cli.base", "tidings.cli.admin")
#: imported only behind ``except ModuleNotFoundError`` (tidings.command): the full CLI
GUARDED = {"tidings.cli.main"}

pytestmark = pytest.mark.timeout(300)


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def server_requirements() -> list[str]:
    project = _project()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    core = project["dependencies"]
    assert isinstance(core, list)
    return [*core, *extras["server"]]


# --------------------------------------------------------------------------- static: imports


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(name: str, path: Path) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def third_party_imports(roots: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level non-stdlib modules imported anywhere (also inside functions) by ``roots`` and
    every Tidings module they reach → the Tidings modules importing them."""
    modules = _modules()
    todo = [m for m in modules if any(m == r or m.startswith(r + ".") for r in roots)]
    seen: set[str] = set()
    found: dict[str, set[str]] = {}
    while todo:
        name = todo.pop()
        if name in seen or name in GUARDED:
            continue
        seen.add(name)
        for imported in _imports(name, modules[name]):
            top = imported.partition(".")[0]
            if top == "tidings":
                if imported in modules:
                    todo.append(imported)
            elif top and top not in sys.stdlib_module_names:
                found.setdefault(top, set()).add(name)
    return found


def _closure(requirements: list[str]) -> set[str]:
    """Distribution names (normalised) the requirements pull in, from installed metadata."""
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    wanted = [(Requirement(r), frozenset()) for r in requirements]
    names: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        req, _ = wanted.pop()
        key = (norm(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        names.add(key[0])
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a marker excluded it here (uvloop on Windows...)
        for spec in dist.requires or []:
            child = Requirement(spec)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in envs):
                wanted.append((child, frozenset()))
    return names


def test_every_import_of_the_server_is_a_server_requirement() -> None:
    """Statically: each third-party module the server's code imports (eagerly or lazily)
    belongs to a distribution that core + ``server`` bring in."""
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    provided = importlib.metadata.packages_distributions()
    allowed = _closure(server_requirements())
    missing = {}
    for module, users in sorted(third_party_imports(SERVER_ROOTS).items()):
        dists = {norm(d) for d in provided.get(module, [module])}
        if not dists & allowed:
            missing[module] = sorted(users)[:3]
    assert not missing, f"server code imports what tidings[server] does not install: {missing}"
    # and the split is real: none of the client's or app's libraries come with the server
    assert not {"kivy", "pynacl", "pillow", "av", "numpy", "zxcvbn"} & allowed


def test_extras_keep_test_as_everything() -> None:
    extras = _project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert "tidings[server,client,app]" in extras["test"]
    assert "tidings[client]" in extras["app"]
    assert any(r.startswith("kivy") for r in extras["app"])
    assert not any(r.startswith(("kivy", "Pillow", "av", "numpy")) for r in extras["server"])


# --------------------------------------------------------------------------- the real venv


@pytest.fixture(scope="module")
def server_venv() -> Path:
    """``build/server-venv`` with only core + ``server`` installed (cached by requirements)."""
    requirements = server_requirements()
    digest = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    stamp = VENV / ".requirements"
    python = VENV / "bin" / "python"
    if not (python.exists() and stamp.exists() and stamp.read_text() == digest):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        installed = subprocess.run([*pip, *requirements], capture_output=True, text=True)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        stamp.write_text(digest)
    return python


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "PYTHON"))}
    return {**env, "PYTHONPATH": str(SRC), **extra}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


@contextlib.contextmanager
def _running(argv: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while _get(f"http://127.0.0.1:{port}/v1/health")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                proc.kill()
                pytest.fail(f"server did not start: {argv}\n{out[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_server_runs_from_a_server_only_install_without_uvloop(
    server_venv, tmp_path, store_env
):
    python = str(server_venv)
    # nothing of the client, the app or the media pipeline is there
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    out = subprocess.run(
        [python, "-c", probe, *CLIENT_ONLY], env=_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
    # every module of the server imports
    walk = (
        "import importlib, pkgutil, tidings.server as s\n"
        "names = [m.name for m in pkgutil.walk_packages(s.__path__, 'tidings.server.')]\n"
        "for n in names + ['tidings.server.app', 'tidings.command', 'tidings.cli.admin']:\n"
        "    importlib.import_module(n)\n"
        "print(len(names))"
    )
    out = subprocess.run([python, "-c", walk], env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 40
    # the command: serve and admin; a client command says what to install
    helped = subprocess.run(
        [python, "-m", "tidings", "serve", "--help"], env=_env(), capture_output=True, text=True
    )
    assert helped.returncode == 0 and "--tls-cert" in helped.stdout, helped.stderr
    refused = subprocess.run(
        [python, "-m", "tidings", "send", "@bob", "hi"], env=_env(), capture_output=True, text=True
    )
    assert refused.returncode == 2 and "tidings[client]" in refused.stderr
    # serve with uvloop unavailable (asyncio's loop), then an admin command over its socket
    port = free_port()
    data = tmp_path / "data"
    no_uvloop = (
        "import sys; sys.modules['uvloop'] = None\n"
        "from tidings.command import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [python, "-c", no_uvloop, "serve", "--port", str(port), "--data", str(data)]
    with _running(argv, _env(**store_env), port):
        assert _get(f"http://127.0.0.1:{port}/v1/ready")[0] == 200
        stats = subprocess.run(
            [python, "-m", "tidings", "admin", "stats", "--json", "--data", str(data)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stats.returncode == 0, stats.stderr
        assert "accounts" in json.loads(stats.stdout)


# --------------------------------------------------------------------------- the container


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    return parsed


def test_the_dockerfile_is_sound() -> None:
    steps = _instructions()
    keywords = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the server must not run as root"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert ("EXPOSE", "8080") in steps
    assert any(k == "VOLUME" and "/data" in a for k, a in steps)
    assert any(k == "RUN" and "pip install" in a and ".[server]" in a for k, a in steps)
    health = [a for k, a in steps if k == "HEALTHCHECK"]
    assert len(health) == 1 and "/v1/health" in health[0] and "urllib" in health[0]
    cmd = _exec_form(next(a for k, a in steps if k == "CMD"))
    assert cmd == ["tidings", "serve", "--host", "0.0.0.0", "--data", "/data"]
    # no secrets baked in: no credentials in ENV/ARG, no key material copied
    for keyword, arguments in steps:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(?i)(secret|password|token|_key\b|access_key)", arguments)
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"(?i)(\.pem|\.key|tidings-data|\.env\b)", arguments)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "build", "tidings-data", "profiles", "*.pem", "*.key"):
        assert entry in ignored, f".dockerignore lacks {entry}"


def _docker_usable() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@pytest.mark.sqlite_only("the image's default store: SQLite under /data")
def test_the_container_serves_health(server_venv, tmp_path, capsys) -> None:
    """With Docker: build the image, run it, wait until its HEALTHCHECK says healthy and
    /v1/health answers. Without: run the image's CMD and HEALTHCHECK here, in the server-only
    venv (what ``pip install .[server]`` makes), with /data a temporary directory."""
    steps = _instructions()
    if _docker_usable():
        _docker_run(capsys)
        return
    with capsys.disabled():
        print(
            "\n[test_packaging] docker is not usable here (no daemon):"
            " the Dockerfile was checked statically and its CMD and HEALTHCHECK run locally"
        )
    cmd = _exec_form(next(a for k, a in steps if k == "CMD"))
    assert cmd[0] == "tidings"
    data = tmp_path / "data"
    argv = [
        str(server_venv),
        "-m",
        "tidings",
        *[data.as_posix() if a == "/data" else a for a in cmd[1:]],
    ]
    port = free_port()
    health = next(a for k, a in steps if k == "HEALTHCHECK")
    check = _exec_form(health.split(" CMD ", 1)[1])
    assert check[:2] == ["python", "-c"]
    script = check[2].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    assert script != check[2], "the HEALTHCHECK should ask 127.0.0.1:8080"
    with _running(argv, _env(TIDINGS_PORT=str(port)), port):
        probe = subprocess.run([str(server_venv), "-c", script], env=_env(), timeout=30)
        assert probe.returncode == 0
        assert data.is_dir() and (data / "tidings.sqlite3").exists()
        assert oct(data.stat().st_mode & 0o777) == "0o700"


def _docker_run(capsys: pytest.CaptureFixture[str]) -> None:
    tag = f"tidings-test:{os.getpid()}"
    name = f"tidings-test-{os.getpid()}"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, tag], check=True, timeout=60)
        user = subprocess.run(
            ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, timeout=30
        )
        assert user.stdout.strip() not in ("", "0")
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline:
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(2)
        assert status == "healthy", shlex.join(["docker", "logs", name])
        with capsys.disabled():
            print("\n[test_packaging] built and ran the image with docker: healthy")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
