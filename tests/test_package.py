"""The package surface: import cost, public names, CLI entry."""

from __future__ import annotations

import subprocess
import sys

import tierswitch
from tierswitch.cli import main


def test_import_loads_no_torch_and_opens_no_connection():
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('import opened a connection')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import tierswitch\n"
        "heavy = [m for m in ('torch', 'redis', 'matplotlib', 'sklearn', 'httpx', 'starlette', 'uvicorn', 'openai')\n"
        "         if m in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


def test_public_names_exist():
    for name in tierswitch.__all__:
        assert hasattr(tierswitch, name), name


def test_cli_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert main(["--version"]) == 0
