"""flopcast as a web service: a thin JSON layer over `flopcast.api` (standard library only).

    POST /api/plan | /api/train | /api/search | /api/infer | /api/simulate | /api/fleet
         body: a scenario as JSON or YAML (the same mapping as a scenario file)
    POST /api/budget      body: {"hardware", "days", and one of "power", "energy", "budget_usd"; "site"}
    GET  /api/models | /api/hardware | /api/sites | /api/audit | /api/model/ID[?seq_len=&kv_dtype=]
    GET  /                the planning page (static/index.html); GET /static/NAME its scripts and styles

Responses are the same objects `--json` prints. Bad input is HTTP 422 with {"error": "<one line>"}
(the CLI's exit code 2); an unknown path is 404; a bug is 500 with a one-line message, never a
traceback. A service reads no files named by its clients: models must be catalog ids or inline
configs, and workload traces are refused. Bodies are limited to 1 MiB, simulations to 100,000
requests, searches run in the serving process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from flopcast.errors import FlopcastError, InvalidScenario

MAX_BODY_BYTES = 1 << 20
MAX_SIM_REQUESTS = 100_000

STATIC_DIR = Path(__file__).parent / "static"   # the page: index.html, app.js, app.css (no CDN)
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _service_safe(scenario: Any) -> Mapping[str, Any]:
    """Refuse what would make the server read its own files."""
    from flopcast import catalog

    if not isinstance(scenario, Mapping):
        raise InvalidScenario("body: expected a scenario mapping (JSON object or YAML mapping)")
    model = scenario.get("model")
    if isinstance(model, str) and model not in catalog.model_registry():
        catalog.model_registry().get(model)   # unknown names get the registry's did-you-mean error
    inference = scenario.get("inference")
    if isinstance(inference, Mapping):
        workload = inference.get("workload")
        if isinstance(workload, Mapping):
            arrival = workload.get("arrival")
            if "trace" in workload or (isinstance(arrival, Mapping) and "trace" in arrival):
                raise InvalidScenario("inference.workload.trace: the service reads no files; give an arrival "
                                      "process instead (or run `flopcast simulate` locally)")
            n = workload.get("num_requests", 0)
            if isinstance(n, (int, float)) and n > MAX_SIM_REQUESTS:
                raise InvalidScenario(f"inference.workload.num_requests: at most {MAX_SIM_REQUESTS:,} on the service, "
                                      f"got {n!r} (run `flopcast simulate` locally for more)")
    return scenario


def _scenario_call(fn):
    def call(body: Any) -> dict[str, Any]:
        return fn(_service_safe(body))
    return call


def _routes() -> dict[str, Any]:
    from flopcast import api

    def search(sc):
        return api.search_training(sc, workers=1).to_dict()

    def budget(body):
        if not isinstance(body, Mapping):
            raise InvalidScenario("body: expected a mapping with hardware, days and one of power, energy, budget_usd")
        allowed = ("hardware", "days", "power", "energy", "budget_usd", "site")
        for key in body:
            if key not in allowed:
                from flopcast.errors import UnknownName

                raise UnknownName("budget field", str(key), allowed)
        if "hardware" not in body or "days" not in body:
            raise InvalidScenario("budget: give hardware and days (and one of power, energy, budget_usd)")
        return api.budget(**{k: body[k] for k in allowed if k in body})

    return {
        "plan": _scenario_call(lambda sc: api.plan(sc).to_dict()),
        "train": _scenario_call(lambda sc: api.estimate_training(sc).to_dict()),
        "search": _scenario_call(search),
        "infer": _scenario_call(lambda sc: api.estimate_serving(sc).to_dict()),
        "simulate": _scenario_call(lambda sc: api.simulate_serving(sc).to_dict()),
        "fleet": _scenario_call(lambda sc: api.size_fleet(sc)),
        "budget": budget,
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "flopcast"
    routes: dict[str, Any] = {}

    def log_message(self, fmt: str, *args: Any) -> None:   # quiet: no per-request stderr lines
        pass

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        if content_type == "application/json":
            try:
                body = json.dumps(payload, allow_nan=False).encode()
            except ValueError as e:
                status, body = 500, json.dumps({"error": f"internal error: {e}"}).encode()
        else:
            body = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type + "; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _guard(self, fn) -> None:
        try:
            self._send(200, fn())
        except FlopcastError as e:
            self._send(422, {"error": str(e).splitlines()[0] if str(e) else type(e).__name__})
        except Exception as e:   # a bug: one line, no traceback
            self._send(500, {"error": f"internal error: {type(e).__name__}: {e}".splitlines()[0]})

    def do_GET(self) -> None:
        from flopcast import api

        url = urlparse(self.path)
        path = url.path.rstrip("/") or "/"
        if path == "/" or path.startswith("/static/"):
            name = "index.html" if path == "/" else path.removeprefix("/static/")
            files = {f.name: f for f in STATIC_DIR.iterdir() if f.suffix in STATIC_TYPES}   # no client-built paths
            if name in files:
                self._send(200, files[name].read_text(), STATIC_TYPES[files[name].suffix])
            else:
                self._send(404, {"error": f"no such file {url.path!r}"})
        elif path == "/api/models":
            self._guard(lambda: {"models": api.list_models()})
        elif path == "/api/hardware":
            self._guard(lambda: {"hardware": api.list_hardware()})
        elif path == "/api/sites":
            self._guard(lambda: {"sites": api.list_sites()})
        elif path == "/api/audit":
            self._guard(lambda: api.audit_claims())
        elif path.startswith("/api/model/"):
            q = parse_qs(url.query)

            def show():
                from flopcast import catalog

                model_id = path.removeprefix("/api/model/")
                catalog.model_registry().get(model_id)   # catalog ids only: no file paths
                seq = q.get("seq_len", [None])[0]
                if seq is not None and not seq.isdigit():
                    raise InvalidScenario(f"seq_len: expected a positive integer, got {seq!r}")
                return api.show_model(model_id, seq_len=int(seq) if seq else None,
                                      kv_dtype=q.get("kv_dtype", [None])[0]).to_dict()
            self._guard(show)
        else:
            self._send(404, {"error": f"no such path {url.path!r}; see GET / for the page and the API list"})

    def do_POST(self) -> None:
        path = urlparse(self.path).path.rstrip("/")
        name = path.removeprefix("/api/")
        if not path.startswith("/api/") or name not in self.routes:
            self._send(404, {"error": f"no such endpoint {path!r}; POST one of "
                                      + ", ".join(f"/api/{k}" for k in self.routes)})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(422, {"error": f"body: {length:,} bytes is over the service's limit of {MAX_BODY_BYTES:,}"})
            return
        raw = self.rfile.read(length).decode("utf-8", errors="replace")

        def run():
            import yaml

            try:
                body = yaml.safe_load(raw) if raw.strip() else None
            except yaml.YAMLError as e:
                first = str(e).splitlines()[0]
                raise InvalidScenario(f"body: not valid JSON or YAML ({first})") from None
            return self.routes[name](body)
        self._guard(run)


def make_server(host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A ready server (call serve_forever); port 0 picks a free port (server.server_address)."""
    handler = type("FlopcastHandler", (Handler,), {"routes": _routes()})
    return ThreadingHTTPServer((host, port), handler)
