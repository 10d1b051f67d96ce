"""A small client for the emulator's ``/_emulator/`` admin API (for tests and demos)."""

from __future__ import annotations

from typing import Any

import httpx


class EmulatorAdmin:
    """Script answers, inject faults, read the request log and change settings at run time."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.base_url}/_emulator", timeout=10)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        response.raise_for_status()
        return response.json()

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self._call("PATCH", "/config", settings)

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def script(self, model: str, prompt: str, response: str) -> None:
        self._call("POST", "/scripts", [{"model": model, "prompt": prompt, "response": response}])

    def scripts(self, answers: list[dict[str, str]]) -> None:
        self._call("POST", "/scripts", answers)

    def fault(
        self,
        path: str,
        *,
        method: str = "*",
        status: int | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        latency_ms: float = 0,
        drop: str | None = None,
        times: int = 1,
    ) -> None:
        self._call(
            "POST",
            "/faults",
            [
                {
                    "method": method,
                    "path": path,
                    "status": status,
                    "body": body,
                    "headers": headers or {},
                    "latency_ms": latency_ms,
                    "drop": drop,
                    "times": times,
                }
            ],
        )

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The request log (method, path, status), optionally filtered."""
        entries = self._call("GET", "/requests")
        return [
            e
            for e in entries
            if (method is None or e["method"] == method) and (path is None or e["path"] == path)
        ]

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def set_job_status(self, job_id: str, status: str, message: str = "") -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/status", {"status": status, "message": message})
