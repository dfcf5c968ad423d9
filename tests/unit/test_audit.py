"""Claims audit: every claim gets a verdict with flopcast's figure and the computation; known-wrong
claims are flagged, exact ones pass, out-of-catalog ones are unverifiable with a reason; bad files
are one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flopcast import api
from flopcast.errors import InvalidScenario


@pytest.fixture(scope="module")
def result():
    return api.audit_claims()


def by_id(result, cid):
    return next(c for c in result["claims"] if c["id"] == cid)


def test_every_claim_has_a_verdict_and_a_reason(result):
    """All built-in claims are audited; each verdict is one of three and carries an explanation."""
    assert len(result["claims"]) == 29
    assert all(c["verdict"] in ("consistent", "inconsistent", "unverifiable") and c["explanation"]
               for c in result["claims"])
    assert sum(result["summary"].values()) == 29 and result["summary"]["inconsistent"] >= 5


def test_known_errors_are_flagged(result):
    """Llama 3.1 405B at 3.8e24 FLOPs is 10x below 6 N D on 15.6T tokens (Meta: 3.8e25); H100 int8 is
    2.8 dense TOPS/W, not 20; 1 GWh trains an ~80B compute-optimal model, not tens of trillions."""
    llama = by_id(result, "s002-08")
    assert llama["verdict"] == "inconsistent" and llama["ratio"] == pytest.approx(0.1, rel=0.02)
    tops = by_id(result, "s000-04")
    assert tops["verdict"] == "inconsistent" and tops["ratio"] == pytest.approx(20 / (1978.9 / 700), rel=1e-3)
    assert by_id(result, "s000-02")["verdict"] == "inconsistent"


def test_exact_figures_pass(result):
    """Active parameters of DeepSeek-V2 / Mixtral 8x22B / Llama 3 70B, B200 fp8 peak, H100 NVLink
    (bidirectional), 100k-GPU facility power: consistent."""
    for cid in ("s003-01", "s003-02", "s003-03", "s002-02", "s002-03", "s002-04", "s002-10"):
        assert by_id(result, cid)["verdict"] == "consistent", by_id(result, cid)


def test_out_of_catalog_claims_are_unverifiable_with_reasons(result):
    """Devices and quantities flopcast has no sourced figures for are not guessed."""
    assert "not in the hardware catalog" in by_id(result, "s002-11")["explanation"]
    assert by_id(result, "s002-15")["verdict"] == "unverifiable"


def test_malformed_claims_and_files(tmp_path):
    """A row with an unreadable value is unverifiable with the reason; a missing file or header is a
    one-line error; the CLI exits 2 on it and 0 with --json on the built-in claims."""
    bad = tmp_path / "c.csv"
    bad.write_text("id,claim_text,subject,quantity,value,unit\nx1,text,DeepSeek-V2,active_params,lots,params\n")
    out = api.audit_claims(str(bad))
    assert out["claims"][0]["verdict"] == "unverifiable" and "could not read" in out["claims"][0]["explanation"]
    with pytest.raises(InvalidScenario, match="no such file"):
        api.audit_claims(str(tmp_path / "none.csv"))
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InvalidScenario, match="missing: id"):
        api.audit_claims(str(tmp_path / "h.csv"))
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "audit", str(tmp_path / "none.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "flopcast.cli", "audit", "--json"], capture_output=True, text=True)
    assert r.returncode == 0 and len(json.loads(r.stdout)["claims"]) == 29
