"""The house shape: one batch configuration, errors that come out as themselves, public paths."""

from __future__ import annotations

import inspect
import pickle
from importlib.metadata import version
from pathlib import Path

import anyio
import attrs
import pytest

import freepik_bg
from freepik_bg import AsyncClient, BatchConfig, MemorySink, ProgressEvent
from freepik_bg._cli import build_parser
from freepik_bg._retries import _TESTING

from .conftest import API, KEY, FakeService, run_cli, urls

# -- one batch configuration -----------------------------------------------------


def test_batch_keywords_are_exactly_the_config_fields_with_the_same_defaults() -> None:
    parameters = inspect.signature(AsyncClient.batch).parameters
    keywords = {
        name: p.default
        for name, p in parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    fields = {f.name: f.default for f in attrs.fields(BatchConfig)}
    assert keywords == fields


def test_every_cli_field_has_a_flag_with_its_help() -> None:
    remove = build_parser()._subparsers._group_actions[0].choices["remove"]  # type: ignore[union-attr]
    flags = {opt: action for action in remove._actions for opt in action.option_strings}
    for field in attrs.fields(BatchConfig):
        flag = field.metadata["flag"] or "--" + field.name.replace("_", "-")
        if field.metadata["cli"]:
            assert flag in flags, flag
            assert flags[flag].help == field.metadata["help"]
            assert flags[flag].dest == field.name


def test_unknown_batch_option_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match=r"unknown batch option\(s\) concurrencyy; valid: "):
        BatchConfig().evolve(concurrencyy=3)
    with pytest.raises(TypeError, match="concurrencyy"):
        freepik_bg.remove_backgrounds([], "out", concurrencyy=3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"rate": -1.0}, "rate must be a positive"),
        ({"burst": 0}, "burst"),
        ({"size": "huge"}, "size must be one of"),
        ({"resubmit_expired": -1}, "resubmit_expired"),
    ],
)
def test_config_validates_each_option(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BatchConfig(**changes)  # type: ignore[arg-type]


def test_cli_bad_number_says_what_is_wrong_not_a_function_name(tmp_path: Path) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a.jpg\n")
    result = run_cli(["remove", str(tmp_path / "urls.txt"), "-o", "out", "--rate", "abc"])
    assert result.returncode == 2
    assert "argument --rate: expected a number of POSTs per second or 'off', got 'abc'" in (
        result.stderr
    )
    assert "parse" not in result.stderr


@pytest.mark.anyio
async def test_config_and_keywords_combine(service: FakeService) -> None:
    seen: list[ProgressEvent] = []
    config = BatchConfig(rate=None, progress=seen.append)
    async with AsyncClient(KEY, base_url=API) as client:
        report = await client.run_batch(urls(3), MemorySink(), config, concurrency=2)
        async with client.batch(urls(2), MemorySink(), config, overwrite=True) as results:
            assert results.stats.concurrency == 32
            assert len([item async for item in results]) == 2
    assert len(report.stored) == 3
    assert seen  # the config's hook ran


# -- exceptions come out as themselves -------------------------------------------


@pytest.mark.anyio
async def test_user_exception_in_the_block_is_not_wrapped(service: FakeService) -> None:
    async def consume(client: AsyncClient) -> None:
        async with client.batch(urls(5), MemorySink(), rate=None) as results:
            async for _ in results:
                raise KeyError("mine")

    async with AsyncClient(KEY, base_url=API) as client:
        with pytest.raises(KeyError) as caught:
            await consume(client)
    assert caught.value.args == ("mine",)


@pytest.mark.anyio
async def test_progress_hook_exception_is_not_wrapped(service: FakeService) -> None:
    def hook(event: ProgressEvent) -> None:
        if event.kind is freepik_bg.ProgressKind.POSTED:
            raise ZeroDivisionError("hook")

    async with AsyncClient(KEY, base_url=API) as client:
        with pytest.raises(ZeroDivisionError, match="hook"):
            await client.run_batch(urls(3), MemorySink(), rate=None, progress=hook)


@pytest.mark.anyio
async def test_outer_cancellation_is_not_an_error(service: FakeService) -> None:
    async with AsyncClient(KEY, base_url=API) as client:
        with anyio.move_on_after(0) as scope:
            await client.run_batch(urls(3), MemorySink(), rate=None)
    assert scope.cancelled_caught


# -- public paths, version, testing switch ---------------------------------------


def test_exports_show_their_public_module_and_pickle_by_it() -> None:
    for name in freepik_bg.__all__:
        obj = getattr(freepik_bg, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "freepik_bg", name
    error = freepik_bg.AuthenticationError("bad key", status_code=401)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is freepik_bg.AuthenticationError
    assert str(again) == "401: bad key"


def test_version_comes_from_the_distribution() -> None:
    assert freepik_bg.__version__ == version("freepik-bg")


def test_set_testing_as_a_context_manager_restores_the_previous_state() -> None:
    before = (_TESTING.enabled, _TESTING.attempts)
    with freepik_bg.set_testing(True, attempts=2):
        assert (_TESTING.enabled, _TESTING.attempts) == (True, 2)
        with freepik_bg.set_testing(False):
            assert (_TESTING.enabled, _TESTING.attempts) == (False, None)
        assert (_TESTING.enabled, _TESTING.attempts) == (True, 2)
    assert (_TESTING.enabled, _TESTING.attempts) == before


@pytest.mark.anyio
async def test_sync_entry_point_inside_an_event_loop_points_to_run_batch() -> None:
    with pytest.raises(RuntimeError, match=r"use `await client.run_batch\(...\)`"):
        freepik_bg.remove_backgrounds([], "out", api_key=KEY)
