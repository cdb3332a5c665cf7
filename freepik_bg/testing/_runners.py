"""Where the server runs: a daemon thread of this process, or a child process.

Both runners start serving and report the bound port; neither knows how the emulator
is then controlled (see `_control`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from freepik_bg.testing._app import EmulatorApp
from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._serving import Serving, bind

__all__ = ["ProcessRunner", "ThreadRunner"]

_START_TIMEOUT = 15.0


class ThreadRunner:
    """The server on its own event loop in a daemon thread of this process."""

    def __init__(self, app: EmulatorApp, host: str, port: int, log_level: str) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._log_level = log_level
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._serving: Serving | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Serve on a new thread; returns the bound port once it accepts connections."""
        sock = bind(self._host, self._port)
        port = int(sock.getsockname()[1])
        self._serving = Serving(self._app, sock, self._log_level)
        self._thread = threading.Thread(
            target=self._run, name=f"freepik-emulator-{port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError("the emulator failed to start") from self._error
        return port

    def _run(self) -> None:
        assert self._serving is not None
        try:
            asyncio.run(self._serving.serve(self._ready.set))
        except BaseException as exc:  # reported to start(), or lost at shutdown
            self._error = exc
        finally:
            self._app.close_executor()
            self._serving.sock.close()
            self._ready.set()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._serving is not None:
            self._serving.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=_START_TIMEOUT)


class ProcessRunner:
    """The server in a child ``python -m freepik_bg.testing`` process."""

    def __init__(
        self, config: EmulatorConfig, host: str, port: int, seed: int | None, log_level: str
    ) -> None:
        self._config = config
        self._host = host
        self._port = port
        self._seed = seed
        self._log_level = log_level
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> int:
        """Start the child; returns the port it announces once it accepts connections."""
        # The child must import this very copy of the package, installed or not.
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-m",
            "freepik_bg.testing",
            "--host",
            self._host,
            "--port",
            str(self._port),
            "--log-level",
            self._log_level,
            "--config-json",
            json.dumps(self._config.to_json()),
            "--announce-json",
        ]
        if self._seed is not None:
            command += ["--seed", str(self._seed)]
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, with our arguments
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, text=True
        )
        line = self._read_announcement()
        try:
            announced = json.loads(line)
            port = int(announced["port"])
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise RuntimeError(f"the emulator process did not start: {line!r}") from None
        return port

    def _read_announcement(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        lines: list[str] = []
        # readline() has no timeout, and select() does not work on Windows pipes.
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(_START_TIMEOUT)
        if not lines:
            self.stop()
            raise RuntimeError("the emulator process did not start in time")
        return lines[0]

    def stop(self) -> None:
        """Terminate the child (SIGTERM: it stops as on Ctrl-C) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
