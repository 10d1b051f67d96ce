"""Emulator state in SQLite, so a restarted emulator (``--state PATH``) keeps models and jobs."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


def iso_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class DuplicateName(Exception):
    """The namespaced model name exists already."""


@dataclass
class ModelRecord:
    name: str
    model_id: str
    job_id: str
    base_model: str | None
    model_type: str
    source_kind: str
    status: str
    calls: int


class Store:
    """Jobs (as the JSON documents ``GET /jobs`` returns) and models, behind one lock."""

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            path or ":memory:", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS jobs (
                job_id TEXT PRIMARY KEY, account TEXT NOT NULL, created REAL NOT NULL,
                doc TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS attachments (
                endpoint_id TEXT NOT NULL, adapter TEXT NOT NULL,
                PRIMARY KEY (endpoint_id, adapter));
            CREATE TABLE IF NOT EXISTS v2 (
                kind TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
                PRIMARY KEY (kind, id));
            CREATE TABLE IF NOT EXISTS models (
                name TEXT PRIMARY KEY, account TEXT NOT NULL, model_id TEXT NOT NULL,
                job_id TEXT NOT NULL, base_model TEXT, model_type TEXT NOT NULL,
                source_kind TEXT NOT NULL, calls INTEGER NOT NULL DEFAULT 0);
            """
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- v2 documents (models, uploads, revisions, endpoints, deployments, attachments) --------

    def put(self, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace a v2 document (keyed by ``doc["id"]``; list order = insert order)."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq FROM v2 WHERE kind = ? AND id = ?", (kind, doc["id"])
            ).fetchone()
            seq = (
                row[0]
                if row
                else (self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM v2").fetchone()[0])
            )
            self._db.execute(
                "INSERT OR REPLACE INTO v2 VALUES (?, ?, ?, ?)",
                (kind, doc["id"], seq, json.dumps(doc)),
            )
        return doc

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM v2 WHERE kind = ? AND id = ?", (kind, doc_id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def all(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM v2 WHERE kind = ? ORDER BY seq", (kind,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def remove(self, kind: str, doc_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM v2 WHERE kind = ? AND id = ?", (kind, doc_id))

    def create_upload(
        self,
        account: str,
        name: str,
        source: str,
        source_kind: str,
        model_type: str,
        base_model: str | None,
        description: str | None,
    ) -> tuple[dict[str, Any], str]:
        """Create the model record and its Queued job atomically; raises DuplicateName."""
        job_id = f"job-{uuid.uuid4()}"
        model_id = f"model-{uuid.uuid4()}"
        now = iso_now()
        args: dict[str, Any] = {"modelName": name, "modelSource": source}
        if description:
            args["description"] = description
        doc = {
            "type": "adapter_upload" if model_type == "adapter" else "model_upload",
            "job_id": job_id,
            "status": "Queued",
            "status_updates": [{"status": "Queued", "message": "Job created", "timestamp": now}],
            "args": args,
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (name, account, model_id, job_id, base_model, model_type, source_kind),
                )
                self._db.execute(
                    "INSERT INTO jobs VALUES (?, ?, ?, ?)",
                    (job_id, account, time.time(), json.dumps(doc)),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise DuplicateName(name) from None
        return doc, model_id

    def job(self, job_id: str, account: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM jobs WHERE job_id = ? AND account = ?", (job_id, account)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def jobs(self, account: str | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT doc FROM jobs" + (" WHERE account = ?" if account else "") + " ORDER BY created"
        )
        with self._lock:
            rows = self._db.execute(query, (account,) if account else ()).fetchall()
        return [json.loads(r[0]) for r in rows]

    def pending_job_ids(self) -> list[str]:
        return [j["job_id"] for j in self.jobs() if j["status"] not in ("Complete", "Failed")]

    def transition(
        self,
        job_id: str,
        status: str,
        message: str,
        shown: str | None = None,
        force: bool = False,
    ) -> None:
        """Append a status update; ``shown`` replaces the reported status (non-enum tests).
        A terminal job never changes again, unless ``force`` (the admin API) says so."""
        with self._lock:
            row = self._db.execute("SELECT doc FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return
            doc = json.loads(row[0])
            if not force and doc["status"] in ("Complete", "Failed"):
                return
            now = iso_now()
            doc["status"] = shown or status
            doc["status_updates"].append(
                {"status": shown or status, "message": message, "timestamp": now}
            )
            doc["updated_at"] = now
            self._db.execute("UPDATE jobs SET doc = ? WHERE job_id = ?", (json.dumps(doc), job_id))

    def model(self, name: str) -> ModelRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT m.name, m.model_id, m.job_id, m.base_model, m.model_type, m.source_kind,"
                " j.doc, m.calls FROM models m JOIN jobs j ON j.job_id = m.job_id WHERE m.name = ?",
                (name,),
            ).fetchone()
        if row is None:
            return None
        return ModelRecord(
            row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6])["status"], row[7]
        )

    def models(self, account: str) -> list[ModelRecord]:
        with self._lock:
            names = [
                r[0]
                for r in self._db.execute(
                    "SELECT name FROM models WHERE account = ? ORDER BY name", (account,)
                )
            ]
        return [m for m in (self.model(n) for n in names) if m is not None]

    def count_call(self, name: str) -> int:
        """Count an inference call to a model; returns the number of calls before this one."""
        with self._lock:
            row = self._db.execute("SELECT calls FROM models WHERE name = ?", (name,)).fetchone()
            self._db.execute("UPDATE models SET calls = calls + 1 WHERE name = ?", (name,))
        return int(row[0]) if row else 0

    def attachments(self, endpoint_id: str | None = None) -> list[tuple[str, str]]:
        """(endpoint id, adapter name) pairs, for one endpoint or all."""
        query = "SELECT endpoint_id, adapter FROM attachments"
        args: tuple[str, ...] = ()
        if endpoint_id is not None:
            query += " WHERE endpoint_id = ?"
            args = (endpoint_id,)
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(query + " ORDER BY adapter", args)]

    def attach(self, endpoint_id: str, adapter: str) -> bool:
        """False when the adapter is bound to the endpoint already."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO attachments VALUES (?, ?)", (endpoint_id, adapter))
            except sqlite3.IntegrityError:
                return False
        return True

    def detach(self, endpoint_id: str, adapter: str) -> bool:
        """False when the adapter was not bound to the endpoint."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM attachments WHERE endpoint_id = ? AND adapter = ?",
                (endpoint_id, adapter),
            )
        return cursor.rowcount > 0
