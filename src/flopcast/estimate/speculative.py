"""Speculative decoding's acceptance length, predicted from published acceptance data
(catalog/speculative.yaml) by method, target model and task, when the scenario does not give it.

A draft of k tokens whose tokens are each accepted with probability alpha (given the ones before it)
yields, per verify step, the accepted prefix plus the target's own bonus token:

    a(k) = 1 + alpha + ... + alpha^k = (1 - alpha^(k+1)) / (1 - alpha)      (Leviathan et al. 2023, eq. 1)

alpha comes from the published row that fits best: the same method; the scenario's task (else chat);
the same model, else the same family, else any model (the median a(k) of the rows left); among
those, the chain length closest to k (a chain row's alpha solves a(k_row) = tau_row, or is given per
draft position; a tree row's is 1 - 1/tau, the deep-draft limit). Leaves out: acceptance under
sampling (temperature > 0; the rows are greedy), and tree breadth beyond what the published tree
measurements hold.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from flopcast.catalog import CATALOG_DIR, _read_yaml
from flopcast.errors import FlopcastError

TASKS = ("chat", "code", "math", "summarisation")


@dataclass(frozen=True, slots=True)
class AcceptanceRow:
    """One published acceptance figure: method, task, target model (or None) and family, the chain
    length it was measured at (None: a draft tree of unstated depth), and the acceptance rate at each
    draft position (one rate for every position, or per position with the last one repeated)."""

    id: str
    method: str
    task: str
    model: str | None
    family: str
    num_draft_tokens: int | None
    alphas: tuple[float, ...]

    def acceptance_length(self, k: int) -> float:
        """Mean tokens per verify step of a k-token chain: 1 + a0 + a0 a1 + ... + a0 ... a(k-1)."""
        total, run = 1.0, 1.0
        for i in range(k):
            run *= self.alphas[min(i, len(self.alphas) - 1)]
            total += run
        return total


def chain_acceptance_length(alpha: float, k: int) -> float:
    """Mean tokens per verify step of a k-token chain with per-token acceptance alpha."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def alpha_for(tau: float, k: int | None) -> float:
    """The per-token acceptance that yields tau tokens per step: with a chain of k tokens, the root of
    a(k) = tau (bisection; a(k) rises with alpha); with a tree of unstated depth, 1 - 1/tau."""
    if k is None:
        return 1.0 - 1.0 / tau
    if not 1.0 <= tau <= k + 1:
        raise FlopcastError(f"catalog/speculative.yaml: tau {tau} outside [1, {k + 1}] for a chain of {k}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chain_acceptance_length(mid, k) < tau else (lo, mid)
    return (lo + hi) / 2


def _table_rows(entry: dict[str, Any]) -> list[AcceptanceRow]:
    out = []
    for method, taus in entry["tau"].items():
        for task, tau in zip(TASKS, taus, strict=True):
            out.append(AcceptanceRow(f"{entry['id']}:{method}:{task}", method, task, entry.get("model"),
                                     entry["family"], None, (alpha_for(float(tau), None),)))
    return out


def _chain_row(entry: dict[str, Any]) -> AcceptanceRow:
    if "alphas" in entry:
        alphas = tuple(float(a) for a in entry["alphas"])
        return AcceptanceRow(entry["id"], entry["method"], entry["task"], entry.get("model"), entry["family"],
                             len(alphas), alphas)
    k = int(entry["num_draft_tokens"])
    alpha = float(entry["alpha"]) if "alpha" in entry else alpha_for(float(entry["tau"]), k)
    return AcceptanceRow(entry["id"], entry["method"], entry["task"], entry.get("model"), entry["family"], k, (alpha,))


@cache
def acceptance_rows() -> tuple[AcceptanceRow, ...]:
    """Every published acceptance figure of catalog/speculative.yaml as a row."""
    doc = _read_yaml(CATALOG_DIR / "speculative.yaml")
    rows = [r for entry in doc.get("tables", []) for r in _table_rows(entry)]
    rows += [_chain_row(entry) for entry in doc.get("chains", [])]
    return tuple(rows)


def _closest_k(rows: list[AcceptanceRow], k: int) -> list[AcceptanceRow]:
    """The rows measured at the chain length nearest k (trees count as deep drafts)."""
    def dist(r: AcceptanceRow) -> float:
        return abs((r.num_draft_tokens if r.num_draft_tokens is not None else 64) - k)
    best = min(dist(r) for r in rows)
    return [r for r in rows if dist(r) == best]


def select_rows(method: str, model_name: str, family: str, task: str, k: int) -> tuple[list[AcceptanceRow], str]:
    """The published rows that predict this case, and how they were chosen (task, model match)."""
    rows = [r for r in acceptance_rows() if r.method == method]
    if not rows:
        return [], "no published acceptance for this method"
    on_task = [r for r in rows if r.task == task] or [r for r in rows if r.task == "chat"]
    how = f"task {task}" if on_task and on_task[0].task == task else "task chat (no row for the task)"
    for label, keep in (("this model", lambda r: r.model == model_name),
                        ("this family", lambda r: r.family == family),
                        ("any model (median)", lambda r: True)):
        picked = [r for r in on_task if keep(r)]
        if picked:
            return _closest_k(picked, k), f"{how}, {label}"
    return [], "no row"


def predict_acceptance(method: str, model: Any, task: str, k: int) -> tuple[float, str]:
    """(acceptance length of a k-token draft, why): the median over the selected rows of their a(k)."""
    rows, how = select_rows(method, model.name, model.family, task, k)
    if not rows:
        raise FlopcastError(f"inference.speculative.acceptance_length: {how} ({method}); give acceptance_length")
    a = min(float(k + 1), max(1.0, statistics.median(r.acceptance_length(k) for r in rows)))
    return a, f"{', '.join(r.id for r in rows)} ({how})"


def with_acceptance(model: Any, spec: Any) -> tuple[Any, str | None]:
    """The inference spec with its speculative acceptance length filled in when not given (predicted
    from catalog/speculative.yaml), and the reason (None when given or no speculation)."""
    sp = spec.speculative
    if sp is None or sp.acceptance_length is not None:
        return spec, None
    a, why = predict_acceptance(sp.method, model, sp.task, sp.num_draft_tokens)
    return replace(spec, speculative=replace(sp, acceptance_length=a, acceptance_source=why)), why


@cache
def _engines() -> dict[str, Any]:
    return _read_yaml(CATALOG_DIR / "speculative.yaml").get("engines", {}) or {}


def host_s_per_step(engine: str) -> float | None:
    """Host time per speculative step that the device does not overlap in `engine` (catalog/
    speculative.yaml engines: SGLang runs speculation without its overlap scheduler), or None for
    an engine without an entry (its host time per iteration applies unchanged)."""
    e = _engines().get(engine)
    return None if not e else float(e["host_s_per_step"])
