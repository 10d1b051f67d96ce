"""A faithful local emulator of Together's v1 API (models upload, jobs, inference).

Start one for a test with :func:`run_emulator`; drive it with :class:`EmulatorAdmin`.
"""

from prefect_together_lora.testing.emulator.admin import EmulatorAdmin
from prefect_together_lora.testing.emulator.app import create_app
from prefect_together_lora.testing.emulator.config import BASE_MODEL_TABLES, EmulatorConfig
from prefect_together_lora.testing.emulator.server import (
    run_emulator,
    run_emulator_process,
    serve_app_in_thread,
)

__all__ = [
    "BASE_MODEL_TABLES",
    "EmulatorAdmin",
    "EmulatorConfig",
    "create_app",
    "run_emulator",
    "run_emulator_process",
    "serve_app_in_thread",
]
