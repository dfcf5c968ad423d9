"""flopcast as a web service: a thin JSON layer over `flopcast.api` (the `web` extra: Starlette on uvicorn).

    POST /api/plan | /api/train | /api/search | /api/infer | /api/simulate | /api/fleet | /api/fleet-plan
         body: a scenario as JSON or YAML (the same mapping as a scenario file)
    POST /api/budget      body: {"hardware", "days", and one of "power", "energy", "budget_usd"; "site"}
                          or {"deadline", "model", "tokens"; "hardware", "site"}
    GET  /api/models | /api/hardware | /api/sites | /api/audit | /api/model/ID[?seq_len=&kv_dtype=]
    GET  /api/jobs/ID?token=T   a long search: its progress, then its result (T: returned with the job)
    GET  /openapi.json    the OpenAPI 3.1 schema of all of the above
    GET  /                the planning page (static/index.html, else a minimal one); GET /static/NAME its assets

Responses are the same objects `--json` prints. Bad input is HTTP 422 with {"error": "<one line>"}
(the CLI's exit code 2); a body over MAX_BODY_BYTES is 413; an unknown path 404; a bug is 500 with a
one-line message, never a traceback. A service opens no path named by its clients: scenario keys
that name files (model configs, calibration profiles, workload traces) must be catalog entries, inline
mappings, or names of files inside the folders given at `flopcast serve --data-dir` (flopcast.files);
an error about a file's contents is one generic line. Work is bounded before it starts
(docs/limits.md) and in time: a request that runs past REQUEST_TIMEOUT_S is answered 422 and its
thread stops at its next progress check (it holds its place among WORK_THREADS until it has stopped).
A search that is not done within SEARCH_SYNC_WAIT_S is answered 202 with a job (an unguessable id and
a token only its maker holds) to poll. Connections: see flopcast.web.server.

This module holds the endpoint table and is importable without the web extra; `flopcast.web.app`
builds the ASGI app from it and `flopcast.web.server` serves it. Adding an endpoint is one line in
`endpoints()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flopcast import files
from flopcast.errors import FlopcastError, InvalidScenario, UnknownName

MAX_BODY_BYTES = 1 << 20          # 1 MiB of request body (a scenario is ~1 kB; 413 beyond)
MAX_YAML_BODY_BYTES = 256 << 10   # YAML bodies (parsed ~10x slower than JSON): 256 KiB
MAX_SIM_REQUESTS = 100_000        # simulated requests per service call (the CLI allows 10,000,000)
MAX_FLEET_REPLICAS = 256          # replicas a fleet-sizing call may try
REQUEST_TIMEOUT_S = 60.0          # wall time of one synchronous request (422 beyond)
SEARCH_SYNC_WAIT_S = 10.0         # a search still running after this becomes a job (202)
JOB_TIMEOUT_S = 600.0             # wall time of one search job
MAX_JOBS = 32                     # search jobs kept (running + finished); the oldest finished go first
WORK_THREADS = 4                  # requests computed at once per process (the others wait their turn)
MEMORY_PER_REQUEST_BYTES = 256 << 20   # the bound tests/web/test_service.py holds (largest simulation)
STOP_GRACE_S = 2.0                # past its deadline a request is answered within this (its work stops at a check)
# connections (flopcast.web.server)
HEAD_TIMEOUT_S = 10.0             # a request line and headers not complete this long after the connection opened
                                  # (or after the previous response) close the connection: idle and slow sockets
BODY_TIMEOUT_S = 30.0             # a body not received within this is refused (408)
KEEP_ALIVE_S = 5                  # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 4096            # open connections and running requests per process (uvicorn answers 503 beyond)
MAX_HEAD_BYTES = 16 << 10         # request line and headers (h11's incomplete-event limit; 400 beyond)


class WorkTimeout(FlopcastError):
    """A request ran past its time limit (HTTP 422: ask for less work)."""


@dataclass(slots=True)
class Context:
    """What an endpoint may use while it runs: a deadline and a progress sink (for jobs)."""

    deadline: float = float("inf")
    done: int = 0
    total: int = 0
    what: str = ""

    def progress(self, done: int, total: int) -> None:
        """Record progress; past the deadline, stop the work with WorkTimeout (the service's
        cooperative cancellation: the search and the simulator call this in their long loops)."""
        self.done, self.total = done, total
        self.check()

    def check(self) -> None:
        """Past the deadline, stop the work with WorkTimeout."""
        if time.monotonic() > self.deadline:
            raise WorkTimeout(f"{self.what or 'request'}: ran past the service's time limit; ask for less work "
                              "(fewer requests, --fix keys for a search) or run it with the CLI")


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str            # GET or POST
    run: Callable[..., Any]   # POST: run(body, ctx); GET: run(params: dict[str, str], ctx)
    summary: str
    body: str | None = None   # "scenario" | "budget" | None
    job: bool = False         # long: runs as a job past SEARCH_SYNC_WAIT_S


def service_safe(scenario: Any) -> Mapping[str, Any]:
    """Refuse work past the service's bounds (files named in a scenario are checked where they are
    resolved, under the request's flopcast.files policy)."""
    from flopcast import catalog

    if not isinstance(scenario, Mapping):
        raise InvalidScenario("body: expected a scenario mapping (JSON object or YAML mapping)")
    model = scenario.get("model")
    if isinstance(model, str) and model not in catalog.model_registry() and not files.current().data_dirs:
        catalog.model_registry().get(model)   # no file can be meant: the registry's did-you-mean error
    inference = scenario.get("inference")
    if isinstance(inference, Mapping):
        workload = inference.get("workload")
        if isinstance(workload, Mapping):
            n = workload.get("num_requests", 0)
            if isinstance(n, (int, float)) and not isinstance(n, bool) and n > MAX_SIM_REQUESTS:
                raise InvalidScenario(f"inference.workload.num_requests: at most {MAX_SIM_REQUESTS:,} on the service, "
                                      f"got {n!r} (run `flopcast simulate` locally for more)")
    return scenario


def _budget(body: Any, ctx: Context) -> dict[str, Any]:
    from flopcast import api

    if not isinstance(body, Mapping):
        raise InvalidScenario("body: expected a mapping with hardware, days and one of power, energy, budget_usd")
    allowed = ("hardware", "days", "power", "energy", "budget_usd", "site", "deadline", "model", "tokens")
    for key in body:
        if key not in allowed:
            raise UnknownName("budget field", str(key), allowed)
    if "deadline" not in body and ("hardware" not in body or "days" not in body):
        raise InvalidScenario("budget: give hardware and days (and one of power, energy, budget_usd), or deadline, "
                              "model and tokens")
    if "hardware" in body and not isinstance(body["hardware"], str):
        raise InvalidScenario(f"hardware: expected a catalog id such as 'b200', got {body['hardware']!r}")
    return api.budget(**{k: body[k] for k in allowed if k in body})


def _model(params: Mapping[str, str], ctx: Context) -> dict[str, Any]:
    from flopcast import api, catalog
    from flopcast.specs import limits

    model_id = params["model_id"]
    catalog.model_registry().get(model_id)   # catalog ids only: no file paths
    seq = params.get("seq_len")
    if seq is not None and (not seq.isdigit() or not 1 <= int(seq) <= limits.MAX_SEQ_LEN):
        raise InvalidScenario(f"seq_len: expected a positive integer up to {limits.MAX_SEQ_LEN:,}, got {seq!r}")
    return api.show_model(model_id, seq_len=int(seq) if seq else None, kv_dtype=params.get("kv_dtype")).to_dict()


def _scenario(fn: Callable[[Mapping[str, Any], Context], Any]) -> Callable[[Any, Context], Any]:
    return lambda body, ctx: fn(service_safe(body), ctx)


def endpoints() -> dict[str, Endpoint]:
    """Every endpoint under /api/, by path. One line each."""
    from flopcast import api

    return {
        "plan": Endpoint("POST", _scenario(lambda sc, ctx: api.plan(sc, workers=1, progress=ctx.progress).to_dict()),
                         "every section of a scenario in one report", "scenario"),
        "train": Endpoint("POST", _scenario(lambda sc, ctx: api.estimate_training(sc).to_dict()),
                          "training estimate for the scenario's parallel plan", "scenario"),
        "search": Endpoint("POST", _scenario(lambda sc, ctx: api.search_training(
            sc, workers=1, progress=ctx.progress, two_pass=False).to_dict()), "best parallel plans (a job when long)",
            "scenario", job=True),
        "infer": Endpoint("POST", _scenario(lambda sc, ctx: api.estimate_serving(sc).to_dict()),
                          "analytic serving estimate", "scenario"),
        "simulate": Endpoint("POST", _scenario(lambda sc, ctx: api.simulate_serving(
            sc, limit_requests=MAX_SIM_REQUESTS, progress=ctx.progress).to_dict()),
            "discrete-event serving simulation of the workload", "scenario"),
        "fleet": Endpoint("POST", _scenario(lambda sc, ctx: _fleet(sc, ctx)),
                          "fewest replicas that meet the SLO", "scenario"),
        "fleet-plan": Endpoint("POST", _scenario(lambda sc, ctx: api.plan_fleet(sc, confirm=False).to_dict()),
                               "a serving fleet over regions and hours (the scenario's fleet section; analytic)",
                               "scenario"),
        "budget": Endpoint("POST", _budget, "devices and compute a power, energy or dollar budget buys", "budget"),
        "models": Endpoint("GET", lambda q, ctx: {"models": api.list_models()}, "catalog models"),
        "hardware": Endpoint("GET", lambda q, ctx: {"hardware": api.list_hardware()}, "catalog accelerators"),
        "sites": Endpoint("GET", lambda q, ctx: {"sites": api.list_sites()}, "catalog sites"),
        "audit": Endpoint("GET", lambda q, ctx: api.audit_claims(), "industry claims checked against flopcast"),
        "model/{model_id}": Endpoint("GET", _model, "one catalog model's exact counts"),
    }


def _fleet(sc: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    from flopcast import api
    from flopcast.specs import limits

    workload = (sc.get("inference") or {}).get("workload") if isinstance(sc.get("inference"), Mapping) else None
    n = workload.get("num_requests") if isinstance(workload, Mapping) else None
    if isinstance(n, (int, float)) and not isinstance(n, bool):
        limits.check_count(n, MAX_SIM_REQUESTS, field="inference.workload.num_requests",
                           hint="the service's bound per simulation; run `flopcast simulate --size-fleet` locally")
    return api.size_fleet(sc, max_replicas=MAX_FLEET_REPLICAS, max_requests=MAX_SIM_REQUESTS, progress=ctx.progress)


def error_line(e: BaseException) -> str:
    """One line for an error response."""
    text = " ".join(str(e).split())
    return text or type(e).__name__
