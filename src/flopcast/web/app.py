"""The ASGI app of the service (Starlette; served by uvicorn): routes built from `endpoints()`.

Requests run on a bounded thread pool (WORK_THREADS per process; no process pool is ever forked for
a request), each with a deadline and under the service's file policy (flopcast.files); a request
holds its place among WORK_THREADS until its thread has returned, even when it was answered first.
Searches run as jobs: a search done within SEARCH_SYNC_WAIT_S is answered as any other request; a
longer one is answered 202 with `/api/jobs/ID?token=T`, which reports its progress (plan groups
evaluated / total) and then its result to the holder of the token.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from flopcast import files, web
from flopcast.errors import FlopcastError, InvalidScenario
from flopcast.web import Context, Endpoint, error_line

STATIC_DIR = Path(__file__).resolve().parent / "static"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>flopcast</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}textarea{width:100%;height:18em;font-family:monospace}
pre{background:#f4f4f4;padding:1em;overflow:auto;max-height:40em}button{margin:0.3em}</style></head>
<body><h1>flopcast</h1>
<p>Paste a scenario (YAML or JSON, as in <code>examples/</code>) and pick what to compute.
The API is described at <a href="/openapi.json">/openapi.json</a>.</p>
<textarea id="s">model: llama-3.1-8b
hardware: h100-sxm
cluster: {num_devices: 8}
training: {seq_len: 8192, global_batch_seqs: 512, total_tokens: 1.0e12}
parallel: {tp: 1, pp: 1, dp: 8, zero_stage: 1, recompute: selective}
inference:
  tp: 1
  dp: 8
  input_tokens: 1024
  output_tokens: 256
  workload: {num_requests: 1000, arrival: {process: poisson, rate_per_s: 100}}
  slo: {ttft_p99: "500 ms", tpot_p99: "30 ms"}
</textarea>
<div>
<button onclick="go('plan')">plan</button><button onclick="go('train')">train</button>
<button onclick="go('search')">search</button><button onclick="go('infer')">infer</button>
<button onclick="go('simulate')">simulate</button><button onclick="go('fleet')">size fleet</button>
</div>
<pre id="out">results appear here</pre>
<script>
async function go(kind) {
  const out = document.getElementById('out');
  out.textContent = 'running ' + kind + ' ...';
  let r = await fetch('/api/' + kind, {method: 'POST', headers: {'Content-Type': 'application/yaml'},
                                       body: document.getElementById('s').value});
  let d = await r.json();
  while (r.status === 202) {
    out.textContent = 'running ' + kind + ': ' + d.progress.done + ' / ' + d.progress.total;
    await new Promise(ok => setTimeout(ok, 1000));
    r = await fetch(d.poll); d = await r.json();
    if (d.status === 'done') { d = d.result; break; }
    if (d.status === 'error') { r = {ok: false, status: 422}; d = {error: d.error}; break; }
    r = {status: 202, ok: true};
  }
  out.textContent = (r.ok ? '' : 'HTTP ' + r.status + '\\n') + JSON.stringify(d, null, 2);
}
</script></body></html>
"""


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    try:
        return JSONResponse(payload, status_code=status, headers=headers)   # allow_nan=False in Starlette
    except ValueError:
        return JSONResponse({"error": "internal error: a result holds a NaN or infinite number"}, status_code=500)


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) past MAX_BODY_BYTES without reading the rest, and (408) when it has
    not arrived within BODY_TIMEOUT_S (a slow sender)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > web.MAX_BODY_BYTES:
        raise _TooLarge(int(declared))
    chunks, size = [], 0
    with anyio.fail_after(web.BODY_TIMEOUT_S):
        async for chunk in request.stream():
            size += len(chunk)
            if size > web.MAX_BODY_BYTES:
                raise _TooLarge(size)
            chunks.append(chunk)
    return b"".join(chunks)


class _TooLarge(Exception):
    def __init__(self, size: int, why: str = ""):
        self.size = size
        self.why = why or f"over the service's limit of {web.MAX_BODY_BYTES:,}"


def _parse_body(raw: bytes) -> Any:
    from flopcast import inputs

    text = inputs.decode_text(raw, what="body")
    if not text.strip():
        raise InvalidScenario("body: empty; expected a scenario as a JSON object or YAML mapping")
    if text.lstrip()[:1] in "{[":      # JSON first: strict and fast (YAML flow style falls through)
        try:
            data = inputs.load_json(text, what="body")
            inputs.check_finite(data)
            return data
        except inputs.NotJSON:
            pass
    if len(raw) > web.MAX_YAML_BODY_BYTES:
        raise _TooLarge(len(raw), f"a YAML body is limited to {web.MAX_YAML_BODY_BYTES:,} bytes; send JSON "
                                  f"(up to {web.MAX_BODY_BYTES:,} bytes)")
    try:
        data = inputs.load_yaml(text, what="body")
    except InvalidScenario as e:
        raise InvalidScenario(str(e).replace("not valid YAML", "not valid JSON or YAML")) from None
    inputs.check_finite(data)
    return data


class _Jobs:
    """Search jobs, kept in order. Each has an unguessable id and a token returned only to the client
    that made it: a job is readable with both (anything else is 404, as for no job at all)."""

    def __init__(self) -> None:
        self.jobs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.lock = threading.Lock()

    def add(self, ctx: Context) -> tuple[str, dict[str, Any]]:
        with self.lock:
            running = sum(1 for j in self.jobs.values() if j["status"] == "running")
            if running >= web.MAX_JOBS // 2:
                raise InvalidScenario(f"search: {running} searches are running on the service; retry later")
            while len(self.jobs) >= web.MAX_JOBS:
                oldest = next((k for k, j in self.jobs.items() if j["status"] != "running"), None)
                if oldest is None:
                    break
                del self.jobs[oldest]
            job_id = secrets.token_urlsafe(12)
            job = {"status": "running", "ctx": ctx, "result": None, "error": None, "started": time.time(),
                   "token": secrets.token_urlsafe(24)}
            self.jobs[job_id] = job
            return job_id, job

    def view(self, job_id: str, token: str | None) -> dict[str, Any] | None:
        """The job as its maker sees it, or None when there is no such job or the token is not its own."""
        job = self.jobs.get(job_id)
        if job is None or token is None or not secrets.compare_digest(token.encode(), job["token"].encode()):
            return None
        ctx = job["ctx"]
        out = {"job": job_id, "token": job["token"], "status": job["status"],
               "poll": f"/api/jobs/{job_id}?token={job['token']}",
               "progress": {"done": ctx.done, "total": ctx.total}, "elapsed_s": round(time.time() - job["started"], 3)}
        if job["status"] == "done":
            out["result"] = job["result"]
        elif job["status"] == "error":
            out["error"] = job["error"]
        return out


class _Service:
    """The endpoints' runner: each request's work runs in a thread under the service's file policy,
    holding one of WORK_THREADS places from its start until its thread returns (a request answered
    past its deadline keeps its place until its work has stopped at a progress check)."""

    def __init__(self, policy: files.FileAccess) -> None:
        self.policy = policy
        self.limiter = anyio.CapacityLimiter(web.WORK_THREADS)
        self.jobs = _Jobs()
        self.running: set[asyncio.Task[Any]] = set()

    def _run(self, ep: Endpoint, arg: Any, ctx: Context) -> Any:
        ctx.check()                      # queued past its deadline: no work at all
        with files.access(self.policy):
            return ep.run(arg, ctx)

    def _run_job(self, job: dict[str, Any], ep: Endpoint, arg: Any, ctx: Context) -> None:
        """A job's work, its outcome recorded by its own thread (whatever becomes of the waiting task)."""
        try:
            job["result"] = self._run(ep, arg, ctx)
            job["status"] = "done"
        except FlopcastError as e:
            job["error"], job["status"] = error_line(e), "error"
        except Exception as e:   # a bug: one line, the job says so
            job["error"], job["status"] = f"internal error: {type(e).__name__}: {error_line(e)}", "error"

    def spawn(self, fn: Callable[..., Any], *args: Any) -> asyncio.Task[Any]:
        """fn(*args) in a thread, as a task that holds its limiter place until the thread returns
        (never abandoned: a cancelled task still waits for its thread)."""
        task = asyncio.get_running_loop().create_task(anyio.to_thread.run_sync(fn, *args, limiter=self.limiter))
        self.running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not task.cancelled():
            task.exception()             # retrieved: an answer already given is not logged again

    async def compute(self, name: str, ep: Endpoint, arg: Any) -> Response:
        ctx = Context(deadline=time.monotonic() + web.REQUEST_TIMEOUT_S, what=name)
        task = self.spawn(self._run, ep, arg, ctx)
        done, _ = await asyncio.wait({task}, timeout=web.REQUEST_TIMEOUT_S + web.STOP_GRACE_S)
        if not done:               # work without progress checks: answered now, its place held until it ends
            ctx.deadline = 0.0
            return _error(422, f"{name}: ran past the service's {web.REQUEST_TIMEOUT_S:g} s limit; ask for less work "
                               "or run it with the CLI")
        try:
            result = task.result()
        except FlopcastError as e:
            return _error(422, error_line(e))
        return _json(200, result)

    async def start_job(self, name: str, ep: Endpoint, arg: Any) -> Response:
        ctx = Context(deadline=time.monotonic() + web.JOB_TIMEOUT_S, what=name)
        try:
            job_id, job = self.jobs.add(ctx)
        except FlopcastError as e:
            return _error(422, error_line(e))
        task = self.spawn(self._run_job, job, ep, arg, ctx)
        done, _ = await asyncio.wait({task}, timeout=web.SEARCH_SYNC_WAIT_S)   # never cancels the task
        if not done or job["status"] == "running":
            view = self.jobs.view(job_id, job["token"]) or {}
            return _json(202, view, headers={"Location": view.get("poll", "")})
        self.jobs.jobs.pop(job_id, None)
        if job["status"] == "done":
            return _json(200, job["result"])
        return _error(422 if not job["error"].startswith("internal error") else 500, job["error"])

    async def job_status(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        view = self.jobs.view(job_id, request.query_params.get("token") or request.headers.get("x-job-token"))
        if view is None:
            return _error(404, f"no such job {job_id[:40]!r} for this token; jobs are kept for the last "
                               f"{web.MAX_JOBS} searches and read with the token returned with them")
        return _json(200, view)

    def post_handler(self, name: str, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            try:
                body = _parse_body(await _read_body(request))
            except _TooLarge as e:
                return _error(413, f"body: {e.size:,} bytes; {e.why}")
            except TimeoutError:
                return _error(408, f"body: not received within {web.BODY_TIMEOUT_S:g} s")
            except FlopcastError as e:
                return _error(422, error_line(e))
            if ep.job:
                return await self.start_job(name, ep, body)
            return await self.compute(name, ep, body)
        return handler

    def get_handler(self, name: str, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            params = dict(request.query_params) | dict(request.path_params)
            return await self.compute(name, ep, params)
        return handler


def create_app(data_dirs: Iterable[str | Path] = ()) -> Starlette:
    """The service: /api/<endpoint> from `flopcast.web.endpoints()`, jobs, the schema and the page.
    data_dirs: the folders whose files a scenario may name (none: no files at all)."""
    table = web.endpoints()
    service = _Service(files.FileAccess.service(data_dirs))

    async def page(request: Request) -> Response:
        index = STATIC_DIR / "index.html"
        if index.is_file():
            return HTMLResponse(index.read_text(encoding="utf-8"))
        return HTMLResponse(PAGE)

    schema = openapi_schema(table)

    async def openapi(request: Request) -> Response:
        return _json(200, schema)

    routes: list[BaseRoute] = [Route("/", page, methods=["GET"]), Route("/openapi.json", openapi, methods=["GET"]),
                               Route("/api/jobs/{job_id}", service.job_status, methods=["GET"])]
    for name, ep in table.items():
        handler = service.post_handler(name, ep) if ep.method == "POST" else service.get_handler(name, ep)
        routes.append(Route(f"/api/{name}", handler, methods=[ep.method]))
    if STATIC_DIR.is_dir():
        from starlette.staticfiles import StaticFiles

        routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))

    posts = ", ".join(f"/api/{k}" for k, e in table.items() if e.method == "POST")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such path {request.url.path!r}; POST one of {posts}, GET /openapi.json for the API")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path!r}; see /openapi.json")

    async def server_error(request: Request, exc: Exception) -> Response:
        return _error(500, f"internal error: {type(exc).__name__}: {error_line(exc)}")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed, Exception: server_error})
    app.state.service = service
    return app


EXAMPLES = {
    "scenario": {"model": "llama-3.2-1b", "hardware": "h100-sxm", "cluster": {"num_devices": 2},
                 "training": {"seq_len": 2048, "global_batch_seqs": 4},
                 "parallel": {"tp": 1, "pp": 1, "dp": 2},
                 "inference": {"tp": 1, "dp": 2, "input_tokens": 512, "output_tokens": 64,
                               "workload": {"num_requests": 200, "arrival": {"process": "poisson", "rate_per_s": 50}},
                               "slo": {"ttft_p99": "1 s", "tpot_p99": "50 ms"}}},
    "budget": {"hardware": "b200", "days": 90, "power": "100 MW"},
}


def openapi_schema(table: dict[str, Endpoint]) -> dict[str, Any]:
    """OpenAPI 3.1 for the endpoint table: bodies are scenario mappings (SCENARIO.md), answers objects."""
    error = {"description": "bad input (one line)", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    too_large = {"description": f"body over {web.MAX_BODY_BYTES} bytes", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    ok = {"description": "the report (the CLI's --json)", "content": {"application/json": {"schema": {"type": "object"}}}}
    bodies = {
        "scenario": {"$ref": "#/components/schemas/Scenario"},
        "budget": {"$ref": "#/components/schemas/Budget"},
    }
    paths: dict[str, Any] = {}
    for name, ep in table.items():
        op: dict[str, Any] = {"summary": ep.summary, "operationId": name.split("/")[0],
                              "responses": {"200": ok, "422": error}}
        if ep.method == "POST":
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": bodies[ep.body or "scenario"], "example": EXAMPLES[ep.body or "scenario"]},
                "application/yaml": {"schema": {"type": "string"}}}}
            op["responses"]["413"] = too_large
            if ep.job:
                op["responses"]["202"] = {"description": "still running: poll the job", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}
        if "{model_id}" in name:
            op["parameters"] = [
                {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "seq_len", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
                {"name": "kv_dtype", "in": "query", "required": False, "schema": {"type": "string"}}]
            op["responses"]["404"] = error
        paths[f"/api/{name}"] = {ep.method.lower(): op}
    paths["/api/jobs/{job_id}"] = {"get": {
        "summary": "a search job: progress, then the result", "operationId": "job",
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the job", "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Job"}}}}, "404": error}}}
    section = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "flopcast", "version": "0.1.0",
                 "description": "The reports of the flopcast CLI over HTTP; bodies are scenarios as in SCENARIO.md. "
                                "Limits: docs/limits.md."},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Job": {"type": "object", "properties": {"job": {"type": "string"}, "token": {"type": "string"}, "status": {
                "type": "string", "enum": ["running", "done", "error"]}, "poll": {"type": "string"},
                "progress": {"type": "object"}, "result": {"type": "object"}, "error": {"type": "string"}}},
            "Scenario": {"type": "object", "required": ["model", "hardware"], "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "model": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "hardware": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "cluster": section, "site": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                "pricing": section, "training": section, "parallel": section, "inference": section}},
            "Budget": {"type": "object", "required": ["hardware", "days"], "properties": {
                "hardware": {"type": "string"}, "days": {"type": "number"}, "power": {"type": "string"},
                "energy": {"type": "string"}, "budget_usd": {"type": "number"},
                "site": {"oneOf": [{"type": "string"}, {"type": "object"}]}}},
        }},
    }
