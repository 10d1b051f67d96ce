"""Everything one emulator instance holds: settings, store, job runner, v2 state, scripted
answers, rate limiter, faults and the request log."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from prefect_together_lora.testing.emulator.config import EmulatorConfig
from prefect_together_lora.testing.emulator.faults import Fault
from prefect_together_lora.testing.emulator.inference import RateLimiter, Scripts
from prefect_together_lora.testing.emulator.jobs import JobRunner
from prefect_together_lora.testing.emulator.store import Store
from prefect_together_lora.testing.emulator.v2 import V2State


class ScriptedAnswer(BaseModel):
    model: str
    prompt: str
    response: str


@dataclass
class EmulatorState:
    config: EmulatorConfig
    store: Store
    runner: JobRunner
    v2: V2State
    scripts: Scripts = field(default_factory=Scripts)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    faults: list[Fault] = field(default_factory=list)
    v2_calls: dict[str, int] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None
