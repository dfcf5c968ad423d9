"""The `flopcast` command: a thin layer over flopcast.api.

Every command takes --json and then prints exactly one JSON object on stdout. Invalid input prints
one line `error: ...` on stderr and exits with code 2, never a traceback. The CLI is built on the
standard library's argparse rather than typer: typer's current releases import pydantic when a
command runs (~0.2 s), which alone would break the 0.3 s cold-start budget. torch and transformers
are never imported; rich only when a table is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from flopcast.errors import FlopcastError

EXIT_INVALID = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage + message)
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_INVALID)


class _Version(argparse.Action):
    """`--version`: prints `flopcast X.Y.Z` and exits (the version is looked up only when asked)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        from flopcast.catalog import flopcast_version

        sys.stdout.write(f"flopcast {flopcast_version()}\n")
        raise SystemExit(0)


def _emit_json(obj: Any) -> None:
    try:
        text = json.dumps(obj, indent=2, allow_nan=False)
    except ValueError:   # a NaN or inf reached a result: a bug, reported as one line, never printed
        raise _InternalError("a result holds a NaN or infinite number") from None
    sys.stdout.write(text + "\n")


class _InternalError(Exception):
    """A bug found at the output edge (the CLI reports it on one line and exits 1)."""


def _render(kind: str, data: Any) -> None:
    from flopcast.report import render

    render.print_renderable(getattr(render, kind)(data))


def cmd_models(args: argparse.Namespace) -> None:
    from flopcast import api

    rows = api.list_models()
    _emit_json({"models": rows}) if args.json else _render("models_list_table", rows)


def cmd_hardware(args: argparse.Namespace) -> None:
    from flopcast import api

    if args.id is not None:
        data = api.show_hardware(args.id)
        return _emit_json(data) if args.json else _render("hardware_table", data)
    rows = api.list_hardware()
    _emit_json({"hardware": rows}) if args.json else _render("hardware_list_table", rows)


def cmd_model_show(args: argparse.Namespace) -> None:
    from flopcast import api

    report = api.show_model(args.model, seq_len=args.seq_len, kv_dtype=args.kv_dtype,
                            attention=args.attention_flops)
    _emit_json(report.to_dict()) if args.json else _render("model_tables", report.to_dict())


def cmd_plan(args: argparse.Namespace) -> None:
    from flopcast import api
    from flopcast.errors import InvalidScenario

    if args.plots:
        from flopcast.inputs import writable_dir

        writable_dir(args.plots, what="--plots")
    update, close = _progress_bar(not args.json, "planning (search, simulation)")
    try:
        report = api.plan(args.scenario, progress=update)
    finally:
        if close:
            close()
    d = report.to_dict()
    written = []
    data = None
    if args.plots or args.html:
        try:
            from flopcast.report import mpl
        except ImportError:   # without the `plots` extra: --plots falls back to plain SVG bars
            if args.html:
                raise InvalidScenario("--html: the report's charts need matplotlib "
                                      "(pip install 'flopcast[plots]')") from None
            mpl = None
        data = mpl.gather(report, args.scenario) if mpl else None
    if args.plots:
        if mpl:
            written = mpl.write_plots(d, data, args.plots)
        else:
            from flopcast.report.plots import write_plots

            written = write_plots(d, args.plots)
        d["plots"] = written
    if args.html:
        from flopcast.report.html import write_html

        d["html"] = write_html(report, args.scenario, args.html, data)["path"]
    if args.json:
        _emit_json(d)
    elif args.markdown:
        from flopcast.report import render

        sys.stdout.write(f"# flopcast plan: {d['name']}\n\n" + render.to_markdown(render.plan_tables(d)))
        for path in written:
            sys.stdout.write(f"\n![{Path(path).stem}]({path})\n")
    else:
        _render("plan_tables", d)
        if written:
            print("plots written: " + ", ".join(written))
        if args.html:
            print(f"report written: {d['html']}")


def cmd_train(args: argparse.Namespace) -> None:
    from flopcast import api

    if args.timeline:
        from flopcast.inputs import writable_file

        writable_file(args.timeline, what="--timeline")
    est = api.estimate_training(args.scenario)
    d = est.to_dict()
    if args.timeline:
        d["timeline_file"] = args.timeline
        events = _write_timeline(est, args.timeline)
        if args.json:
            d["timeline"] = events
    _emit_json(d) if args.json else _render("training_tables", d)
    if args.timeline and not args.json:
        print(f"timeline written: {args.timeline}")


def _write_timeline(est: Any, path: str) -> list[dict[str, Any]]:
    """Write the plan's simulated pipeline step to `path` (SVG, or JSON events for a .json name) and
    return its events."""
    from flopcast.errors import InvalidScenario
    from flopcast.report.timeline import event_dicts, gantt_svg

    pipe = getattr(est, "pipeline", None)
    if pipe is None:
        raise InvalidScenario("--timeline: draws the pipeline schedule; this plan has pp 1 (no pipeline)"
                              if getattr(est, "plan", None) is not None else
                              "--timeline: draws one plan's pipeline schedule; a phased run has several")
    events = pipe.events()
    out = event_dicts(events)
    if path.lower().endswith(".json"):
        text = json.dumps({"schedule": pipe.schedule, "pp": pipe.pp, "vpp": pipe.vpp, "num_microbatches": pipe.m,
                           "pipelined_s": pipe.step_s, "events": out}, indent=1) + "\n"
    else:
        title = (f"{pipe.schedule}: pp {pipe.pp}, vpp {pipe.vpp}, {pipe.m} micro-batches, "
                 f"pipelined part of the step {pipe.step_s:.3f} s")
        text = gantt_svg(events, pp=pipe.pp, step_s=pipe.step_s, transfer_s=pipe.transfer_s, title=title)
    Path(path).write_text(text)
    return out


def cmd_validate(args: argparse.Namespace) -> None:
    from flopcast import api

    # a bar where the command takes over a second: cross-validation refits, and the simulation and
    # ranking runs (each reported as it finishes)
    slow = args.cv is not None or args.what in ("simulation", "ranking")
    what = {"simulation": "simulating the runs (and refitting per group)",
            "ranking": "timing the plans of each job"}.get(args.what, "validating, one group left out at a time")
    update, close = _source_progress(not args.json and slow, what)
    try:
        report = api.validate(args.what, cv=args.cv, baseline=args.baseline, profile=args.profile, progress=update)
    finally:
        if close:
            close()
    table = {"ranking": "ranking_validation_tables", "memory": "memory_validation_tables",
             "simulation": "simulation_validation_tables"}.get(
        args.what, "fit_validation_tables")
    _emit_json(report) if args.json else _render(table, report)


def cmd_calibrate(args: argparse.Namespace) -> None:
    from flopcast import api

    update, close = _source_progress(not args.json, "calibrating, one source left out at a time")
    try:
        out = api.calibrate(args.runs, out=args.out, hardware=args.hardware, framework=args.framework,
                            progress=update)
    finally:
        if close:
            close()
    _emit_json(out) if args.json else _render("calibration_tables", out)


def cmd_infer(args: argparse.Namespace) -> None:
    from flopcast import api

    est = api.estimate_serving(args.scenario)
    _emit_json(est.to_dict()) if args.json else _render("serving_tables", est.to_dict())


def cmd_simulate(args: argparse.Namespace) -> None:
    from flopcast import api

    if args.size_fleet:
        update, close = _progress_bar(not args.json, "sizing the fleet (simulated trials)")
        try:
            out = api.size_fleet(args.scenario, max_replicas=args.max_replicas, max_requests=args.max_requests,
                                 plot=args.plot, progress=update)
        finally:
            if close:
                close()
        _emit_json(out) if args.json else _render("fleet_tables", out)
        return
    if args.plot:
        from flopcast.errors import InvalidScenario

        raise InvalidScenario("--plot: draws the latency-throughput curve of --size-fleet; add --size-fleet")
    if args.requests:
        from flopcast.inputs import writable_file

        writable_file(args.requests, what="--requests")
    update, close = _progress_bar(not args.json, "simulating requests")
    try:
        res = api.simulate_serving(args.scenario, max_requests=args.max_requests, progress=update)
    finally:
        if close:
            close()
    d = res.to_dict()
    if args.requests:
        from flopcast.sim.engine import write_requests_csv

        write_requests_csv(res, args.requests)
        d["requests_file"] = args.requests
    _emit_json(d) if args.json else _render("simulation_tables", d)


def cmd_fleet(args: argparse.Namespace) -> None:
    from flopcast import api

    d = api.plan_fleet(args.scenario, backend=args.backend, ray_address=args.ray_address,
                       confirm=not args.no_confirm).to_dict()
    if args.plots:
        from flopcast.report.fleet_plot import write_fleet_plots

        d["plots"] = write_fleet_plots(d, args.plots)
    if args.json:
        return _emit_json(d)
    from flopcast.report.fleet_render import fleet_plan_tables
    from flopcast.report.render import print_renderable, to_markdown

    if args.markdown:
        sys.stdout.write(f"# flopcast fleet: {d['name']}\n\n" + to_markdown(fleet_plan_tables(d)))
        for path in d.get("plots", []):
            sys.stdout.write(f"\n![{Path(path).stem}]({path})\n")
        return
    print_renderable(fleet_plan_tables(d))
    if d.get("plots") and not args.json:
        print("plots written: " + ", ".join(d["plots"]))


def _progress_bar(enabled: bool, what: str = "evaluating plans (tp, cp, pp groups)"):
    """A rich progress bar on stderr for searches longer than a second, only on a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None, None
    import time

    from rich.progress import Progress

    state: dict[str, Any] = {"start": time.perf_counter(), "bar": None, "task": None}

    def update(done: int, total: int | None) -> None:
        if state["bar"] is None and time.perf_counter() - state["start"] > 1.0:
            bar = Progress(transient=True)
            bar.start()
            state["task"] = bar.add_task(what, total=total)
            state["bar"] = bar
        if state["bar"] is not None:
            state["bar"].update(state["task"], completed=done, total=total)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].stop()

    return update, close


def _source_progress(enabled: bool, what: str):
    """A progress bar for validate and calibrate, whose fits report each source they leave out
    (the count of sources is not known in advance: the bar counts them)."""
    update, close = _progress_bar(enabled, what)
    if update is None:
        return None, None
    count = [0]

    def on_source(_source: str) -> None:
        count[0] += 1
        update(count[0], None)

    return on_source, close


def cmd_search(args: argparse.Namespace) -> None:
    from flopcast import api

    update, close = _progress_bar(not args.json)
    try:
        result = api.search_training(args.scenario, top=args.top, objective=args.objective, backend=args.backend,
                                     ray_address=args.ray_address, workers=args.workers, progress=update,
                                     fixed=_fixed(args.fix), phase=args.phase)
    finally:
        if close:
            close()
    _emit_json(result.to_dict()) if args.json else _render("search_tables", result.to_dict())


def _fixed(items: list[str]) -> dict:
    """--fix tp=8 --fix recompute=full -> {"tp": 8, "recompute": "full"}."""
    from flopcast import inputs
    from flopcast.errors import InvalidScenario

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidScenario(f"--fix: {item!r} should read KEY=VALUE (e.g. tp=8)")
        out[key.strip()] = inputs.load_yaml(value, what=f"--fix {key.strip()}")
        inputs.check_finite(out[key.strip()], where=f"--fix {key.strip()}")
    return out


def cmd_audit(args: argparse.Namespace) -> None:
    from flopcast import api

    out = api.audit_claims(args.file)
    _emit_json(out) if args.json else _render("audit_table", out)


def cmd_serve(args: argparse.Namespace) -> None:
    """uvicorn with the web extra's ASGI app (imported only here: the other commands stay light)."""
    from flopcast.errors import InvalidScenario

    try:
        from flopcast.web.server import make_server, serve_workers
    except ImportError as e:
        raise InvalidScenario(f"serve: the web extra is not installed ({e.name}); pip install 'flopcast[web]'") from None

    if args.workers == 1:
        try:
            server = make_server(args.host, args.port, data_dirs=args.data_dir)
        except OSError as e:
            raise InvalidScenario(f"--port: cannot listen on {args.host}:{args.port} ({e.strerror})") from None
        host, port = server.server_address[:2]
        print(f"flopcast service on http://{host}:{port}/ (API: /openapi.json; Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return
    print(f"flopcast service on http://{args.host}:{args.port}/ with {args.workers} workers (API: /openapi.json)",
          flush=True)
    serve_workers(args.host, args.port, args.workers, args.data_dir)


def cmd_sweep(args: argparse.Namespace) -> None:
    from flopcast import api

    if args.out:
        from flopcast.inputs import writable_file

        writable_file(args.out, what="--out")
    update, close = _progress_bar(not args.json, "sweeping (one search per combination)")
    try:
        result = api.sweep_training(args.scenario, vary=args.vary, objective=args.objective, backend=args.backend,
                                    ray_address=args.ray_address, workers=args.workers, out=args.out,
                                    progress=update)
    finally:
        if close:
            close()
    _emit_json(result) if args.json else _render("sweep_table", result)


def cmd_budget(args: argparse.Namespace) -> None:
    from flopcast import api

    r = api.budget(hardware=args.hardware, days=args.days, power=args.power, energy=args.energy,
                   budget_usd=args.budget_usd, site=args.site, deadline=args.deadline, model=args.model,
                   tokens=args.tokens, scenario=args.scenario)
    _emit_json(r) if args.json else _render("budget_table", r)


def cmd_sites(args: argparse.Namespace) -> None:
    from flopcast import api

    rows = api.list_sites()
    _emit_json({"sites": rows}) if args.json else _render("sites_table", rows)


def _finite_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


_Add = Callable[[str, Callable[[argparse.Namespace], Any], str], argparse.ArgumentParser]


def _training_commands(add: _Add) -> None:
    """plan, train, search and sweep."""
    sp = add("plan", cmd_plan, "the main job: every section of a scenario in one report")
    sp.add_argument("scenario", help="scenario YAML/JSON file (see examples/)")
    sp.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    sp.add_argument("--plots", default=None, metavar="DIR",
                    help="also write the report's charts as SVG into DIR (matplotlib's with the `plots` extra)")
    sp.add_argument("--html", default=None, metavar="FILE",
                    help="also write one self-contained HTML report with its charts (needs the `plots` extra)")
    sp = add("train", cmd_train, "training estimate (memory per device, step time, MFU) for the scenario's plan")
    sp.add_argument("scenario", help="scenario YAML/JSON file with training and parallel sections")
    sp.add_argument("--timeline", default=None, metavar="FILE",
                    help="write the simulated pipeline schedule: an SVG Gantt chart per rank, or JSON events "
                         "for FILE.json (with --json the events are also under the timeline key)")
    sp = add("search", cmd_search, "the best parallel plans for the scenario's model, devices and batch")
    sp.add_argument("scenario", help="scenario YAML/JSON file with a training section (parallel is chosen)")
    sp.add_argument("--top", type=_positive_int, default=10, help="how many plans to list [10]")
    sp.add_argument("--objective", default="throughput", choices=("throughput", "time-to-train", "cost", "energy"))
    sp.add_argument("--backend", default="local", choices=("local", "ray"), help="local processes or Ray tasks")
    sp.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    sp.add_argument("--workers", type=_positive_int, default=None, help="local processes [all cores]")
    sp.add_argument("--fix", action="append", default=[], metavar="KEY=VALUE",
                    help="hold a plan key fixed, e.g. --fix tp=8 --fix pp=16 (repeatable)")
    sp.add_argument("--phase", default=None, metavar="NAME",
                    help="with training.phases: the phase to plan [the main phase, the one with the most tokens]")
    sp = add("sweep", cmd_sweep, "a search per combination of --vary values; one row per combination")
    sp.add_argument("scenario", help="base scenario YAML/JSON file")
    sp.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                    help="e.g. hardware=h100-sxm,b200 or cluster.num_devices=1024,4096 (repeatable)")
    sp.add_argument("--out", default=None,
                    help="also write the table to FILE.csv, or FILE.parquet (needs the `parquet` extra)")
    sp.add_argument("--objective", default="throughput", choices=("throughput", "time-to-train", "cost", "energy"))
    sp.add_argument("--backend", default="local", choices=("local", "ray"))
    sp.add_argument("--ray-address", default=None)
    sp.add_argument("--workers", type=_positive_int, default=None)


def _validation_commands(add: _Add) -> None:
    """validate and calibrate."""
    sp = add("validate", cmd_validate, "compare predictions with published measurements")
    sp.add_argument("what", choices=("training", "inference", "on-device", "memory", "ranking", "simulation",
                                     "speculative"),
                    help="which estimator to validate (on-device: batch-1 decode and prompt processing on phone "
                         "and laptop NPUs/GPUs; memory: peak memory per device; ranking: the order of "
                         "measured plans of one job; simulation: latency percentiles under load through "
                         "`flopcast simulate`; speculative: published speedups of speculative decoding)")
    sp.add_argument("--cv", choices=("source", "generation"), default=None,
                    help="also cross-validate: predict each source family (source) or hardware generation "
                         "(generation) with parameters fitted without it")
    sp.add_argument("--baseline", action="store_true",
                    help="also report the one-parameter baseline (training: model FLOPs / (devices x peak x one "
                         "efficiency); "
                         "serving: a compute and HBM roofline at one efficiency)")
    sp.add_argument("--profile", default=None, metavar="PROFILE",
                    help="calibration profile: shipped (default), none, or a profile YAML from `flopcast calibrate`")
    sp = add("calibrate", cmd_calibrate, "fit the calibration profile's global parameters to measured runs")
    sp.add_argument("runs", nargs="+", metavar="RUNS",
                    help="RUNS.csv files (id,source,scenario,metric,value) or the built-in sets: training, inference")
    sp.add_argument("--out", default=None, metavar="PROFILE.yaml", help="write the fitted profile here")
    sp.add_argument("--hardware", default=None, help="only runs on this accelerator id")
    sp.add_argument("--framework", default=None, help="only runs under this training framework or serving engine")


def _serving_commands(add: _Add) -> None:
    """infer, simulate and fleet."""
    sp = add("infer", cmd_infer, "serving estimate: KV capacity, TTFT, TPOT, steady-state throughput")
    sp.add_argument("scenario", help="scenario YAML/JSON file with an inference section")
    sp = add("simulate", cmd_simulate, "discrete-event serving simulation of the inference workload: latency "
                                       "percentiles, throughput, SLO attainment")
    sp.add_argument("scenario", help="scenario YAML/JSON file with an inference section and its workload")
    sp.add_argument("--size-fleet", action="store_true",
                    help="find the cheapest fleet (replicas, EP groups, or prefill and decode pools) whose steady-state "
                         "p99 TTFT/TPOT meet inference.slo at the workload's rate")
    sp.add_argument("--plot", default=None, metavar="FILE.svg",
                    help="with --size-fleet: also write the latency-throughput curve it explored as SVG")
    sp.add_argument("--max-replicas", type=_positive_int, default=1024, help="largest fleet tried [1024]")
    sp.add_argument("--requests", default=None, metavar="FILE",
                    help="also write one CSV row per request (arrival, lengths, TTFT, TPOT, end-to-end)")
    sp.add_argument("--max-requests", type=_positive_int, default=None, metavar="N",
                    help="simulate only the first N requests of the workload (stated in the assumptions); with "
                         "--size-fleet, the longest run of one trial")
    sp = add("fleet", cmd_fleet, "size a serving fleet over regions and hours: devices, MW, energy, $ per token and "
                                 "carbon for each candidate deployment (the scenario's fleet section)")
    sp.add_argument("scenario", help="scenario YAML/JSON file with a fleet section (see docs/fleet.md)")
    sp.add_argument("--backend", default="local", choices=("local", "ray"),
                    help="size the region x deployment grid in this process or as Ray tasks (same results)")
    sp.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    sp.add_argument("--plots", default=None, metavar="DIR",
                    help="also write devices and MW over the day per region, and the candidates compared, as SVG")
    sp.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    sp.add_argument("--no-confirm", action="store_true",
                    help="skip the simulation of each region's binding hour (analytic sizing only)")


def _other_commands(add: _Add) -> None:
    """budget, audit, serve and the catalog listings."""
    sp = add("budget", cmd_budget, "devices, compute and the compute-optimal model a power/energy/$ budget buys; "
                                   "with --deadline, the fewest devices that finish a run by then")
    sp.add_argument("--hardware", default=None, help="accelerator id, e.g. b200 (with --deadline: optional, "
                                                      "every shipping accelerator compared)")
    sp.add_argument("--days", type=_finite_float, default=None, help="duration of the run in days")
    sp.add_argument("--power", default=None, help="facility power, e.g. '100 MW'")
    sp.add_argument("--energy", default=None, help="facility energy, e.g. '1 GWh'")
    sp.add_argument("--budget-usd", type=_finite_float, default=None, help="dollars for device-hours")
    sp.add_argument("--site", default=None, help="site id (see `flopcast sites`) [us-average]")
    sp.add_argument("--deadline", default=None, help="finish-by duration, e.g. '90d': the fewest devices that train "
                                                     "--model on --tokens by then")
    sp.add_argument("--model", default=None, help="model id for --deadline, e.g. llama-3.1-405b")
    sp.add_argument("--tokens", default=None, help="training tokens for --deadline, e.g. 15.6e12")
    sp.add_argument("--scenario", default=None, help="scenario file whose model, hardware, site, reliability, "
                                                     "training.total_tokens and training.deadline answer --deadline")
    sp = add("audit", cmd_audit, "check quantitative industry claims against flopcast's catalog and estimators")
    sp.add_argument("file", nargs="?", default=None, help="claims CSV (default: the built-in industry claims)")
    sp = add("serve", cmd_serve, "run the web service: the same reports over HTTP (bad input: HTTP 422)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    sp.add_argument("--port", type=_port, default=8000, help="port [8000]; 0 picks a free one")
    sp.add_argument("--workers", type=_positive_int, default=1,
                    help="server processes [1]; each runs requests on a bounded thread pool")
    sp.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                    help="a folder whose files scenarios may name (model configs, calibration profiles, traces), "
                         "by names relative to it; repeatable [none: the service reads no files named in a request]")
    add("sites", cmd_sites, "list catalog sites: grid carbon, electricity price, PUE")
    add("models", cmd_models, "list catalog models with exact parameter counts")
    sp = add("hardware", cmd_hardware, "list catalog accelerators, or show one with its sources")
    sp.add_argument("id", nargs="?", help="an accelerator id, e.g. h100-sxm")



def _model_commands(sub: Any) -> None:
    """`flopcast model show`."""
    mp = sub.add_parser("model", help="one model: `flopcast model show ID_OR_CONFIG`")
    msub = mp.add_subparsers(dest="model_command", metavar="SUBCOMMAND", parser_class=_Parser)
    msub.required = True
    sp = msub.add_parser("show", help="exact parameters, FLOPs per token and KV-cache bytes",
                         description="Exact parameters, FLOPs per token and KV-cache bytes of a "
                         "catalog model or a Hugging Face config.json.")
    sp.add_argument("model", help="catalog id (see `flopcast models`) or path to a config.json")
    sp.add_argument("--seq-len", type=_positive_int, default=None, help="sequence length [4096]")
    sp.add_argument("--kv-dtype", default=None, help="KV-cache dtype: bf16 fp16 fp8 int8 fp4 int4 fp32 [bf16]")
    sp.add_argument("--attention-flops", default="causal", choices=("causal", "full"),
                    help="attention FLOP convention: causal (Megatron halving) or full (PaLM)")
    sp.add_argument("--json", action="store_true", help="print one JSON object (SI units)")
    sp.set_defaults(func=cmd_model_show)


def build_parser() -> argparse.ArgumentParser:
    """The `flopcast` parser: every command with --json, its arguments in one function per group."""
    p = _Parser(prog="flopcast", description="Plan and simulate AI compute: exact model counts, "
                "sourced hardware, training and serving estimates.")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], Any], help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--json", action="store_true", help="print one JSON object (SI units)")
        sp.set_defaults(func=func)
        return sp

    _training_commands(add)
    _validation_commands(add)
    _serving_commands(add)
    _other_commands(add)
    _model_commands(sub)
    return p

def main(argv: list[str] | None = None) -> int:
    """Run one command; FlopcastError -> `error: ...` on stderr and exit code 2."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.func(args)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_INVALID
    except FlopcastError as e:
        sys.stderr.write(f"error: {_one_line(str(e))}\n")
        return EXIT_INVALID
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except OSError as e:   # a file the command writes (--plots, --out, --requests): name it, no traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        sys.stderr.write(f"error: {where}{e.strerror or type(e).__name__}; check the path and its permissions\n")
        return EXIT_INVALID
    except Exception as e:   # a bug: one line, never a traceback (FLOPCAST_DEBUG=1 shows it)
        import os

        if os.environ.get("FLOPCAST_DEBUG"):
            raise
        sys.stderr.write(f"error: internal error ({type(e).__name__}: {_one_line(str(e))}); this is a bug in "
                         "flopcast, please report it with the input\n")
        return 1
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split()) if text else "invalid input"


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
