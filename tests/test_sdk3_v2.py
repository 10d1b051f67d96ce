"""The official `together` 3.x SDK is the referee of the emulator's v2 surface: the unmodified
SDK drives the whole path (whoami, supported models, configs, model record, remote upload and
its events, revisions and files, endpoint, deployment, traffic split, adapter attachment,
inference on the endpoint and the adapter, teardown in Together's order), and every raw answer
is validated strictly (``model_validate``, required fields and types) against the SDK's own
pydantic types — the SDK itself builds responses leniently, so this is what keeps the emulator
from answering anything the real service would not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefect_together_lora.testing.adapters import write_adapter, zip_folder
from tests.helpers import BASE_8B, put_file, raw_presign

TOGETHER3 = Path(__file__).parents[1] / ".venv" / "together3"

SCRIPT = r'''
import json, sys, time
import httpx
import together
from together.types import (
    Endpoint, EndpointDeployment, Model, ModelListFilesResponse, ModelListRevisionsResponse,
    SupportedModel, Project,
)
from together.types.models import (
    Config, RemoteUploadCreateResponse, RemoteUploadEventsResponse, RemoteUploadRetrieveResponse,
)
from together.types.endpoints import AdapterCreateResponse, AdapterRetrieveResponse
from together.types.whoami_project_api_key import WhoamiProjectAPIKey

URL, KEY, SOURCE, BASE = sys.argv[1:5]
assert together.__version__.startswith("3."), together.__version__
raw = httpx.Client(base_url=URL, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)

def strict(model, path, **params):
    """The raw answer, validated strictly against the SDK's type."""
    response = raw.get(path, params=params)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return model.model_validate(response.json())

def wait(fetch, done, what, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"{what} never finished: {value}"
        time.sleep(0.05)

client = together.Together(api_key=KEY, base_url=URL, max_retries=0)
me = client.whoami()
assert me.type == "project_api_key", me
strict(WhoamiProjectAPIKey, "/v3/whoami")
pid, slug = me.project.id, me.project.slug
projects = client.projects.list()
assert [p.id for p in projects] == [pid]
for item in raw.get("/v1/projects").json()["data"]:
    Project.model_validate(item)
c = together.Together(api_key=KEY, base_url=URL, max_retries=0, project_id=pid)

# catalog: the base's LoRA profile (dynamic preferred), and its config
supported = list(c.models.list_supported(search=BASE))
for item in raw.get("/v2/supported-models", params={"search": BASE}).json()["data"]:
    SupportedModel.model_validate(item)
profile = next(
    p for m in supported for p in m.deployment_profiles
    if p.api_model_name == BASE and p.adapter_mode == "ADAPTER_MODE_DYNAMIC"
)
base_id = profile.model.split("/models/")[1].split("/")[0]
assert base_id.startswith("ml_")
lora_only = list(c.models.list_supported(adapter_mode="ADAPTER_MODE_DISABLED"))
assert lora_only, "a DISABLED-mode profile is in the catalog"
config_id = profile.config.rsplit("/", 1)[1]
config = c.models.configs.retrieve(config_id)
strict(Config, f"/v2/projects/{pid}/configs/{config_id}")
assert {s.key: s.value for s in config.selectors}["adapter_mode"] == "dynamic"

# model record: bare name, qualified by the project slug; duplicates conflict
model = c.models.create(base_model_id=base_id, name="sdk-v2-lora", type="adapter")
assert model.name == f"{slug}/sdk-v2-lora" and model.weights.type == "WEIGHTS_TYPE_ADAPTER"
strict(Model, f"/v2/projects/{pid}/models/{model.id}")
try:
    c.models.create(base_model_id=base_id, name="sdk-v2-lora", type="adapter")
    raise AssertionError("duplicate name accepted")
except together.ConflictError:
    pass
try:
    c.models.create(base_model_id=supported[0].id, name="arch-id", type="adapter")
    raise AssertionError("arch_ id accepted")
except together.BadRequestError:
    pass

# remote upload: downloads and checks the archive; events; a validated revision; files
upload = c.models.remote_uploads.create(model_id=model.id, remote_url=SOURCE)
RemoteUploadCreateResponse.model_validate(upload.model_dump(by_alias=True, mode="json"))
done = wait(
    lambda: c.models.remote_uploads.retrieve(upload.id),
    lambda u: u.status in ("REMOTE_UPLOAD_STATUS_SUCCEEDED", "REMOTE_UPLOAD_STATUS_FAILED"),
    "upload",
)
assert done.status == "REMOTE_UPLOAD_STATUS_SUCCEEDED", done
strict(RemoteUploadRetrieveResponse, f"/v2/projects/{pid}/models/uploads/{upload.id}")
assert any(u.id == upload.id for u in c.models.remote_uploads.list())
revisions = wait(
    lambda: c.models.list_revisions(model.id),
    lambda r: r.data and r.data[0].validation_status == "REVISION_VALIDATION_STATUS_SUCCESS",
    "revision",
)
strict(ModelListRevisionsResponse, f"/v2/projects/{pid}/models/{model.id}/revisions")
events = strict(RemoteUploadEventsResponse, f"/v2/projects/{pid}/models/uploads/{upload.id}/events")
kinds = [e.type for e in events.data]
assert "download.started" in kinds and "validation.succeeded" in kinds, kinds
page = c.models.remote_uploads.events(upload.id, limit=2)
assert len(page.data) == 2 and page.next_cursor
files = c.models.list_files(model.id)
strict(ModelListFilesResponse, f"/v2/projects/{pid}/models/{model.id}/files")
assert {f.path for f in files.data} >= {"adapter_config.json", "adapter_model.safetensors"}
assert all(isinstance(f.size_bytes, str) for f in files.data)  # int64 as string

# serving: endpoint, deployment of the base from its LoRA profile, traffic, READY
endpoint = c.endpoints.create(name="sdk-ep")
assert endpoint.name == f"{slug}/sdk-ep"
try:
    c.endpoints.create(name="sdk-ep")
    raise AssertionError("duplicate endpoint accepted")
except together.ConflictError:
    pass
checked = c.endpoints.deployments.create(
    endpoint.id, name="base", autoscaling={"min_replicas": 1, "max_replicas": 1},
    model=profile.model, config=profile.config, validate_only=True,
)
assert checked.status.state and not list(c.endpoints.deployments.list(endpoint.id))
deployment = c.endpoints.deployments.create(
    endpoint.id, name="base", autoscaling={"min_replicas": 1, "max_replicas": 1},
    model=profile.model, config=profile.config, inactive_timeout=60,
)
try:
    c.endpoints.update(endpoint.id, etag="e-stale", traffic_split=[
        {"deployment_id": deployment.id, "weight": 100}], update_mask="trafficSplit")
    raise AssertionError("stale etag accepted")
except together.ConflictError:
    pass
endpoint = c.endpoints.retrieve(endpoint.id)
endpoint = c.endpoints.update(endpoint.id, etag=endpoint.etag, update_mask="trafficSplit",
                              traffic_split=[{"deployment_id": deployment.id, "weight": 100}])
assert endpoint.traffic_split[0].deployment_id == deployment.id
ready = wait(
    lambda: c.endpoints.deployments.retrieve(deployment.id, endpoint_id=endpoint.id),
    lambda d: d.status.state == "DEPLOYMENT_STATE_READY", "deployment",
)
strict(EndpointDeployment,
       f"/v2/projects/{pid}/endpoints/{endpoint.id}/deployments/{deployment.id}")
strict(Endpoint, f"/v2/projects/{pid}/endpoints/{endpoint.id}")

# the adapter, hot-loaded onto the base's deployment
attachment = c.endpoints.adapters.create(
    endpoint_id=endpoint.id, deployment_id=deployment.id, adapter_model_id=model.id)
AdapterCreateResponse.model_validate(attachment.model_dump(by_alias=True, mode="json"))
loaded = wait(
    lambda: c.endpoints.adapters.retrieve(attachment.id, endpoint_id=endpoint.id,
                                          deployment_id=deployment.id),
    lambda a: all(r.state == "ADAPTER_LOAD_STATE_READY" for r in a.per_cluster)
    and all(r.realized_revision_id == a.desired_revision_id for r in a.per_cluster),
    "adapter",
)
strict(AdapterRetrieveResponse,
       f"/v2/projects/{pid}/endpoints/{endpoint.id}/deployments/{deployment.id}/adapters/{attachment.id}")
assert loaded.desired_revision_id == revisions.data[0].revision_id
listed = c.endpoints.adapters.list(endpoint_id=endpoint.id, deployment_id=deployment.id)
assert [a.id for a in listed] == [attachment.id]

# inference on the same host (base URL overridden): the endpoint (base) and the adapter
base_answer = c.chat.completions.create(model=f"{slug}/sdk-ep",
                                        messages=[{"role": "user", "content": "hi"}], max_tokens=8)
adapter_answer = c.chat.completions.create(
    model=f"{slug}/sdk-v2-lora", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
assert base_answer.choices[0].message.content and adapter_answer.choices[0].message.content
assert base_answer.choices[0].message.content != adapter_answer.choices[0].message.content
pinned = c.chat.completions.create(model=f"{slug}/sdk-ep/base",
                                   messages=[{"role": "user", "content": "hi"}], max_tokens=8)
assert pinned.choices[0].message.content == base_answer.choices[0].message.content

# teardown in Together's order: a live deployment blocks the model's deletion
try:
    c.models.delete(model.id)
    raise AssertionError("deleted a model a live deployment uses")
except together.BadRequestError as exc:
    assert "referenced by a live deployment" in str(exc)
c.endpoints.adapters.delete(attachment.id, endpoint_id=endpoint.id, deployment_id=deployment.id,
                            etag=loaded.etag)
current = c.endpoints.deployments.retrieve(deployment.id, endpoint_id=endpoint.id)
try:
    c.endpoints.deployments.delete(deployment.id, endpoint_id=endpoint.id, etag=current.etag)
    raise AssertionError("deleted a running deployment")
except together.BadRequestError:
    pass
c.endpoints.deployments.update(deployment.id, endpoint_id=endpoint.id, update_mask="autoscaling",
                               etag=current.etag,
                               autoscaling={"min_replicas": 0, "max_replicas": 0})
wait(lambda: c.endpoints.deployments.retrieve(deployment.id, endpoint_id=endpoint.id),
     lambda d: d.status.state == "DEPLOYMENT_STATE_STOPPED", "stop")
try:
    c.chat.completions.create(model=f"{slug}/sdk-ep", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a stopped endpoint answered")
except together.BadRequestError as exc:
    assert "endpoint_not_ready" in str(exc)
endpoint = c.endpoints.retrieve(endpoint.id)
try:  # a PATCH with no field to change
    c.endpoints.update(endpoint.id, etag=endpoint.etag)
    raise AssertionError("an empty update was accepted")
except together.BadRequestError as exc:
    assert "no fields to update" in str(exc)
c.endpoints.update(endpoint.id, etag=endpoint.etag, update_mask="trafficSplit", traffic_split=[])
current = c.endpoints.deployments.retrieve(deployment.id, endpoint_id=endpoint.id)
c.endpoints.deployments.delete(deployment.id, endpoint_id=endpoint.id, etag=current.etag)
c.endpoints.delete(endpoint.id, etag=c.endpoints.retrieve(endpoint.id).etag)
c.models.delete(model.id)
try:
    c.models.retrieve(model.id)
    raise AssertionError("deleted model still there")
except together.NotFoundError:
    pass
print("ok")
'''


@pytest.mark.skipif(
    not (TOGETHER3 / "together").is_dir(),
    reason="the 3.x SDK is installed by `make install` into .venv/together3",
)
def test_sdk3_drives_the_whole_v2_path(together_emulator, s3_bucket, tmp_path) -> None:
    archive = zip_folder(write_adapter(tmp_path / "a", BASE_8B), tmp_path / "a.zip")
    put_file(s3_bucket.client, s3_bucket.bucket, "a.zip", archive)
    source = raw_presign(s3_bucket.client, s3_bucket.bucket, "a.zip")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            together_emulator.base_url,
            together_emulator.api_key,
            source,
            BASE_8B,
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(TOGETHER3), "PATH": "/usr/bin:/bin"},
        timeout=180,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        result.stdout[-2000:] + result.stderr[-4000:]
    )


@pytest.mark.skipif(
    not (TOGETHER3 / "together").is_dir(),
    reason="the 3.x SDK is installed by `make install` into .venv/together3",
)
@pytest.mark.together_emulator(v2_error_shape="rpc", wrong_project_status=404)
def test_sdk3_errors_project_scope_and_rpc_bodies(together_emulator) -> None:
    code = r"""
import sys, together
URL, KEY = sys.argv[1:3]
c = together.Together(api_key=KEY, base_url=URL, max_retries=0, project_id="proj_someone_else")
try:
    c.models.list()
    raise AssertionError("a foreign project answered")
except together.NotFoundError:
    pass
try:
    together.Together(api_key=KEY, base_url=URL, max_retries=0).models.list()
    raise AssertionError("no project id accepted")
except ValueError as exc:
    assert "Missing project_id" in str(exc)
mine = together.Together(api_key=KEY, base_url=URL, max_retries=0, project_id="proj_emulator0001")
try:
    mine.models.create(base_model_id="ml_nope", name="x", type="adapter")
except together.BadRequestError as exc:
    body = exc.body
    assert body["code"] == 3 and body["details"][0]["detail"], body
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code, together_emulator.base_url, together_emulator.api_key],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(TOGETHER3), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
