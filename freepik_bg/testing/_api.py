"""The emulator's public names, imported on first use of any of them (see `freepik_bg._lazy`).

Each name is imported `as` itself: an explicit re-export, for type checkers.
"""

from __future__ import annotations

from freepik_bg.testing._app import EmulatorApp as EmulatorApp
from freepik_bg.testing._cli import (
    add_arguments as add_arguments,
    build_parser as build_parser,
    main as main,
    run as run,
)
from freepik_bg.testing._config import (
    DEFAULT_API_KEY as DEFAULT_API_KEY,
    MAX_SOURCE_BYTES as MAX_SOURCE_BYTES,
    REAL_API_RATE_LIMITS as REAL_API_RATE_LIMITS,
    EmulatorConfig as EmulatorConfig,
    RateLimit as RateLimit,
)
from freepik_bg.testing._faults import (
    Endpoint as Endpoint,
    Fault as Fault,
    FaultKind as FaultKind,
    FaultRule as FaultRule,
)
from freepik_bg.testing._samples import (
    SampleInfo as SampleInfo,
    SampleKind as SampleKind,
    generate_sample as generate_sample,
    sample_info as sample_info,
    sample_names as sample_names,
)
from freepik_bg.testing._server import Emulator as Emulator
from freepik_bg.testing._sniff import sniff_format as sniff_format
from freepik_bg.testing._stats import EmulatorStats as EmulatorStats, RequestRecord as RequestRecord
