"""Starting and stopping: threads, asyncio and trio, child processes, CLI, fixture."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest

from freepik_bg.testing import (
    Emulator,
    EmulatorConfig,
    Fault,
    FaultRule,
    _serving,
    build_parser,
)
from freepik_bg.testing._cli import config_from_options
from freepik_bg.testing._exchange import ConnectionRegistry

SAMPLE = "ball-small.png"
ROOT = Path(__file__).resolve().parents[2]


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("freepik-emulator")]


def _is_running(emu: Emulator) -> bool:
    # A function call, so that type checkers do not keep the narrowing from inside `with`.
    return emu.running


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_context_manager_starts_fast_and_leaves_nothing_behind(client: httpx.Client) -> None:
    before = set(threading.enumerate())
    with Emulator() as emu:
        assert emu.running
        assert emu.port > 0
        assert emu.base_url == f"http://127.0.0.1:{emu.port}"
        assert emu.url_for("samples") == emu.base_url + "/samples"
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        assert client.post(emu.api_url, data=data, headers=headers).status_code == 200
        assert _emulator_threads()
    assert not _is_running(emu)
    assert set(threading.enumerate()) <= before
    with pytest.raises(httpx.ConnectError):
        client.get(emu.url_for("/_emulator/health"))


def test_stop_interrupts_stalled_responses(client: httpx.Client) -> None:
    emu = Emulator().start()
    emu.inject("post", Fault.stall(60))
    data = {"image_url": emu.image_url(SAMPLE)}
    headers = {"x-freepik-api-key": emu.api_key}
    with client.stream("POST", emu.api_url, data=data, headers=headers) as response:
        assert response.status_code == 200  # headers are out: the stall has begun
        started = time.monotonic()
        emu.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_stop_with_a_request_in_flight_logs_no_traceback(
    client: httpx.Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A source server that accepts and never answers keeps one POST in flight past the
    # shutdown grace period, which is shortened so the test does not wait for it.
    monkeypatch.setattr(_serving, "_STOP_GRACE", 0.1)
    with socket.create_server(("127.0.0.1", 0)) as silent, ThreadPoolExecutor(1) as pool:
        silent.settimeout(30)
        emu = Emulator(latency=0.01).start()
        source = f"http://127.0.0.1:{silent.getsockname()[1]}/never.jpg"
        headers = {"x-freepik-api-key": emu.api_key}
        answer = pool.submit(client.post, emu.api_url, data={"image_url": source}, headers=headers)
        fetch, _ = silent.accept()  # the emulator is fetching the source: in flight
        with fetch:
            emu.stop()
        with pytest.raises(httpx.TransportError):
            answer.result()
    assert _errors_logged(caplog) == []


@pytest.mark.anyio
async def test_stop_while_clients_connect_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Connections accepted just as the listener closes used to be served after the drain,
    # and cancelled with a traceback when the loop ended. A race: several rounds.
    for _ in range(5):
        emu = await anyio.to_thread.run_sync(Emulator(latency=1.0).start)
        limits = httpx.Limits(max_connections=None)
        # A connection still half-open when the listener closes is dropped by the kernel,
        # and the client would only learn of it on its SYN retry, a second or more later.
        timeout = httpx.Timeout(30.0, connect=0.25)
        async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=timeout) as http:
            headers = {"x-freepik-api-key": emu.api_key}
            data = {"image_url": emu.image_url(SAMPLE)}
            async with anyio.create_task_group() as group:
                for _ in range(30):
                    group.start_soon(_post_ignoring_errors, http, emu.api_url, data, headers)
                await anyio.to_thread.run_sync(emu.stop)
    assert _errors_logged(caplog) == []


def test_connections_arriving_after_stop_are_aborted() -> None:
    class Transport:
        aborted = False

        def get_extra_info(self, name: str) -> object:
            return ("127.0.0.1", 50000) if name == "peername" else None

        def abort(self) -> None:
            self.aborted = True

    registry = ConnectionRegistry()
    early, late = Transport(), Transport()
    registry.add(early)  # type: ignore[arg-type]
    registry.abort_all()
    assert early.aborted
    registry.add(late)  # type: ignore[arg-type]
    assert late.aborted
    assert registry.get(("127.0.0.1", 50000)) is None


async def _post_ignoring_errors(
    http: httpx.AsyncClient, url: str, data: dict[str, str], headers: dict[str, str]
) -> None:
    with contextlib.suppress(httpx.TransportError):
        await http.post(url, data=data, headers=headers)


def test_fixed_port_and_single_use() -> None:
    port = _free_port()
    emu = Emulator(port=port)
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.base_url
    with emu:
        assert emu.port == port
    emu.stop()  # idempotent
    with pytest.raises(RuntimeError, match="once"):
        emu.start()


def test_port_in_use() -> None:
    with Emulator() as first, pytest.raises(OSError, match="in use"):
        Emulator(port=first.port).start()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_context_manager(anyio_backend: str) -> None:
    async with Emulator() as emu, httpx.AsyncClient(trust_env=False) as http:
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        response = await http.post(emu.api_url, data=data, headers=headers)
        assert response.status_code == 200
        preview = await http.get(response.json()["preview"])
        assert preview.headers["content-type"] == "image/png"
    assert not emu.running


def test_process_mode(client: httpx.Client) -> None:
    started = time.monotonic()
    with Emulator(process=True, link_ttl=60, seed=5) as emu:
        assert time.monotonic() - started < 10
        headers = {"x-freepik-api-key": emu.api_key}
        data = {"image_url": emu.image_url(SAMPLE)}
        links = client.post(emu.api_url, data=data, headers=headers).json()
        assert client.get(links["preview"]).status_code == 200

        stats = emu.stats
        assert stats.credits_charged == 1
        assert stats.downloads == {"preview": 1}
        assert emu.config.link_ttl == 60

        emu.inject("post", Fault.http_error(503))
        assert client.post(emu.api_url, data=data, headers=headers).status_code == 503

        emu.configure(rate=1, burst=1, link_ttl=30)
        assert emu.config.link_ttl == 30
        assert client.post(emu.api_url, data=data, headers=headers).status_code == 200
        assert client.post(emu.api_url, data=data, headers=headers).status_code == 429

        emu.advance_time(61)
        assert client.get(links["preview"]).status_code == 404
        assert emu.stats.links_expired == 1
        assert emu.sample_bytes(SAMPLE) == client.get(emu.image_url(SAMPLE)).content
        emu.reset_stats()
        assert emu.stats.posts == 0
        with pytest.raises(RuntimeError, match="child process"):
            _ = emu.app
    with pytest.raises(httpx.ConnectError):
        client.get(emu.url_for("/_emulator/health"))


def test_process_mode_takes_knobs_and_faults_before_start(client: httpx.Client) -> None:
    emu = Emulator(process=True, api_key="proc-key")
    emu.configure(expired_status=410)
    emu.inject("post", Fault.http_error(502))
    assert emu.stats.posts == 0  # answered locally until the child runs
    with emu:
        assert emu.api_key == "proc-key"
        assert emu.config.expired_status == 410
        headers = {"x-freepik-api-key": "proc-key"}
        data = {"image_url": emu.image_url(SAMPLE)}
        assert client.post(emu.api_url, data=data, headers=headers).status_code == 502


def test_process_mode_refuses_a_clock() -> None:
    with pytest.raises(ValueError, match="clock"):
        Emulator(process=True, clock=time.monotonic)


def test_command_line_serves_until_interrupted(client: httpx.Client) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "freepik_bg.testing", "--port", "0", "--api-key", "cli-key"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("freepik_bg emulator listening on http://127.0.0.1:")
        base = banner.split()[-1]
        assert "cli-key" in proc.stdout.readline()
        assert client.get(f"{base}/_emulator/health").json() == {"status": "ok"}
        assert client.get(f"{base}/_emulator/config").json()["api_keys"] == ["cli-key"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_command_line_options_map_to_config() -> None:
    options = build_parser().parse_args(
        [
            "--link-ttl",
            "5",
            "--rate",
            "2",
            "--burst",
            "4",
            "--api-key",
            "a",
            "--api-key",
            "b",
            "--fast",
            "--latency",
            "0.1,0.2",
            "--no-retry-after",
            "--invalid-params-style",
            "problem",
        ]
    )
    config = config_from_options(options)
    assert config.link_ttl == 5
    assert [(r.rate, r.burst) for r in config.rate_limits] == [(2, 4)]
    assert config.api_keys == ("a", "b")
    assert config.fast
    assert config.latency == (0.1, 0.2)
    assert not config.retry_after_header
    assert config.invalid_params_style == "problem"
    real = config_from_options(build_parser().parse_args(["--real-rate-limits"]))
    assert len(real.rate_limits) == 2


def test_every_knob_but_fault_rules_has_a_command_line_option() -> None:
    options = build_parser().parse_args(
        [
            "--expired-status",
            "410",
            "--fetch-timeout",
            "2.5",
            "--max-source-bytes",
            "1000",
            "--png-compress-level",
            "6",
            "--download-latency",
            "0.3",
        ]
    )
    config = config_from_options(options)
    assert config == EmulatorConfig(
        expired_status=410,
        fetch_timeout=2.5,
        max_source_bytes=1000,
        png_compress_level=6,
        download_latency=0.3,
    )
    help_text = build_parser().format_help()
    # Each knob's default is read from its field, not repeated next to the flag.
    assert "link lifetime in seconds (default: 300.0)" in help_text
    for option in ("--api-key", "--rate", "--no-retry-after", "--fast", "--max-source-bytes"):
        assert option in help_text
    assert "--fault-rules" not in help_text
    with pytest.raises(ValueError, match="either"):
        config_from_options(build_parser().parse_args(["--rate", "1", "--real-rate-limits"]))


def test_config_json_round_trip() -> None:
    rule = FaultRule("post", Fault.http_error(503), 0.25)
    config = EmulatorConfig(link_ttl=3, latency=(0.1, 0.2), fault_rules=[rule])
    config = config.with_changes(rate=5, extra_api_keys=["second"])
    assert config.api_keys == ("test-key", "second")
    assert EmulatorConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(TypeError, match="linkttl"):
        EmulatorConfig.changes_from_json({"linkttl": 3})


def test_emulator_takes_config_and_knob_keywords() -> None:
    base = EmulatorConfig(link_ttl=30, fast=True)
    emu = Emulator(base, latency=0.1, api_key="k")
    assert emu.config == base.with_changes(latency=0.1, api_key="k")
    with pytest.raises(TypeError, match="'link_tll'"):
        Emulator(link_tll=3)
    with pytest.raises(TypeError, match="'speed'"):
        emu.configure(speed=2)


def test_fixture(freepik_emulator: Emulator) -> None:
    assert freepik_emulator.running
    assert freepik_emulator.config.link_ttl == 300


@pytest.mark.freepik_emulator(link_ttl=7, api_key="marked")
def test_fixture_marker(freepik_emulator: Emulator) -> None:
    assert freepik_emulator.config.link_ttl == 7
    assert freepik_emulator.api_key == "marked"


def test_import_without_the_emulator_extra() -> None:
    code = (
        "import sys\n"
        "for name in ('PIL', 'numpy', 'uvicorn'):\n"
        "    sys.modules[name] = None\n"
        "import freepik_bg.testing, freepik_bg.testing._pytest_plugin\n"
        "from freepik_bg.testing import Fault, sample_names\n"
        "assert 'mug-plain.jpg' in sample_names()\n"
        "Fault.http_error(503)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_admin_api(emu: Emulator, client: httpx.Client) -> None:
    admin = emu.url_for("/_emulator")
    assert client.post(f"{admin}/config", json={"link_ttl": 12}).json()["link_ttl"] == 12
    assert emu.config.link_ttl == 12
    bad = client.post(f"{admin}/config", json={"link_ttl": -1})
    assert bad.status_code == 400
    assert "link_ttl" in bad.json()["message"]
    fault = Fault.truncate(0.5).to_json()
    client.post(f"{admin}/faults", json={"endpoint": "download", "faults": [fault]})
    assert client.get(f"{admin}/faults").json() == {"post": [], "download": [fault]}
    client.delete(f"{admin}/faults")
    assert client.get(f"{admin}/faults").json() == {"post": [], "download": []}
    assert client.post(f"{admin}/faults", json={"endpoint": "x", "faults": []}).status_code == 400
    assert client.get(f"{admin}/stats").json()["posts"] == 0
    assert client.get(f"{admin}/nope").status_code == 404
