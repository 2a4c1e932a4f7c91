"""The accelerator build parameters; they live in :mod:`sw.contract.config`.

Kept as a thin re-export so that every existing ``from sw.accel_config import AccelConfig``
(quant/, bench/, the app, the tests) stays valid while the contract has one home.
"""

from sw.contract.config import (
    DEFAULT_CONFIG,
    AccelConfig,
    ConfigError,
)

__all__ = [
    "DEFAULT_CONFIG",
    "AccelConfig",
    "ConfigError",
]
