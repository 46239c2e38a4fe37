"""The CLI's error contract without a server: typed ``{code, message}`` on stderr, nothing on
stdout, and distinct exit codes for bad usage and for errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidings.cli.main import EXIT_ERROR, EXIT_USAGE, main


def error_of(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    out, err = capsys.readouterr()
    assert out == ""
    parsed: dict[str, str] = json.loads(err.strip().splitlines()[-1])
    assert set(parsed) == {"code", "message"}
    return parsed


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate", "--json"],
        ["send", "--profile", "p", "--json"],
        ["history", "--profile", "p", "--json"],
        ["group", "--json"],
        ["sync", "--profile", "p", "--for", "soon", "--json"],
    ],
)
def test_usage_errors_are_typed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert error_of(capsys)["code"] == "usage"


def test_usage_error_without_json_is_human(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error (usage):")


def test_missing_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = str(tmp_path / "nobody")
    assert main(["conversations", "--profile", profile, "--json"]) == EXIT_ERROR
    assert error_of(capsys)["code"] == "profile_not_found"


def test_bad_message_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = str(tmp_path / "nobody")
    assert main(["status", "--profile", profile, "nonsense", "--json"]) == EXIT_ERROR
    assert error_of(capsys)["code"] == "bad_argument"


def test_app_without_kivy_or_with_it_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_kivy(name: str, *args: object, **kwargs: object) -> object:
        if name == "kivy" or name.startswith("kivy."):
            raise ImportError("No module named 'kivy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kivy)
    argv = ["app", "--server", "http://127.0.0.1:1", "--profile", str(tmp_path), "--json"]
    assert main(argv) == EXIT_ERROR
    error = error_of(capsys)
    assert error["code"] == "kivy_missing"
    assert "kivy" in error["message"].lower()
