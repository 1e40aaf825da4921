"""Fixtures for the `flowker test` tests: a socket guard, the CLI in this process, and
a folder of specs (workflows/, executors/, tests/) written from text."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

import pytest


class SocketOpened(AssertionError):
    pass


@pytest.fixture
def socket_guard(monkeypatch):
    """Any attempt to connect a socket, in this process, fails the test (and is listed)."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args and isinstance(args[0], socket.socket) else args)
        raise SocketOpened(f"a socket was opened: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def flowker_cli(capsys, monkeypatch):
    """``flowker ARGS`` in this process: (exit code, stdout, stderr)."""
    from flowker.auth.discovery import INSECURE_TRANSPORT_VARIABLE
    from flowker.cli import cli
    from flowker.cli.common import run_cli

    for name in [name for name in os.environ if name.startswith("FLOWKER_")]:
        monkeypatch.delenv(name)
    # `flowker test` allows http:// issuers for its in-process fake token endpoint; the
    # variable it sets goes when the test ends.
    monkeypatch.setenv(INSECURE_TRANSPORT_VARIABLE, "placeholder")
    monkeypatch.delenv(INSECURE_TRANSPORT_VARIABLE)

    def run(*args, **settings: str) -> tuple[int, str, str]:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        try:
            code = run_cli(cli, [str(arg) for arg in args])
        except SystemExit as exc:  # sys.exit inside a command
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def spec_folder(tmp_path):
    """write({"workflows/a.yaml": text, ...}) -> the folder, with the texts dedented."""

    def write(files: dict[str, str]) -> Path:
        for relative, text in files.items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        return tmp_path

    return write
