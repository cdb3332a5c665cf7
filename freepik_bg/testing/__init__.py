"""A local emulator of Freepik's remove-background API, for tests and benchmarks.

Test your application without spending credits: the emulator serves
``POST /v1/ai/beta/remove-background`` like the real service (authentication, form
validation, a real fetch of ``image_url``, JPEG/PNG and 20 MB checks, real cutouts,
expiring links), plus generated sample images, fault injection and counters.

Examples:
    ```python
    import freepik_bg
    from freepik_bg.testing import Emulator, Fault

    async def test_cutout(tmp_path):
        async with Emulator() as emu:
            async with freepik_bg.AsyncClient(api_key=emu.api_key, base_url=emu.base_url) as client:
                emu.inject("post", Fault.http_error(503))  # the first try fails
                cutout = await client.remove_background(emu.image_url("mug-plain.jpg"))
                await client.download_to(cutout, tmp_path / "mug.png")
            assert emu.stats.credits_charged == 1
    ```

Running it needs the ``emulator`` extra (``pip install freepik-bg[emulator]``: Pillow,
numpy, uvicorn); importing this module does not. See docs/testing.md for the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from freepik_bg._lazy import lazy_exports

if TYPE_CHECKING:
    # For type checkers and IDEs; at run time `__getattr__` imports these on first use.
    from freepik_bg.testing._api import *

__all__ = [
    "DEFAULT_API_KEY",
    "MAX_SOURCE_BYTES",
    "REAL_API_RATE_LIMITS",
    "Emulator",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorStats",
    "Endpoint",
    "Fault",
    "FaultKind",
    "FaultRule",
    "RateLimit",
    "RequestRecord",
    "SampleInfo",
    "SampleKind",
    "add_arguments",
    "build_parser",
    "generate_sample",
    "main",
    "run",
    "sample_info",
    "sample_names",
    "sniff_format",
]

# `freepik-bg --help` builds the emulator's subcommand from `_cli` alone: the server,
# httpx and uvicorn are imported with the first public name asked for.
__getattr__, __dir__ = lazy_exports(__name__, __all__)
