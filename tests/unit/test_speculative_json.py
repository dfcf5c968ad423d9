"""`flopcast infer --json` on every speculative-decoding method (issue 22, deliverable 7: it once
crashed with `SpeculativeSpec is not JSON serializable`)."""

from __future__ import annotations

import json

import pytest
import yaml

from flopcast import cli
from flopcast.specs.serving import SPECULATIVE_METHODS

SPECS = {
    "mtp": ("deepseek-v3", 8, {"method": "mtp", "num_draft_tokens": 1, "acceptance_length": 1.8}),
    "eagle": ("llama-3.1-8b", 1, {"method": "eagle", "num_draft_tokens": 3, "acceptance_length": 2.5}),
    "draft_model": ("llama-3.1-70b", 4, {"method": "draft_model", "num_draft_tokens": 4, "acceptance_length": 2.8,
                                         "draft_model": "llama-3.1-8b"}),
    # acceptance_length omitted: predicted from catalog/speculative.yaml
    "eagle2": ("llama-3.1-70b", 4, {"method": "eagle2", "num_draft_tokens": 4, "verify_tokens": 16}),
    "eagle3": ("llama-3.1-8b", 1, {"method": "eagle3", "num_draft_tokens": 3, "task": "code"}),
    "medusa": ("qwen3-8b", 1, {"method": "medusa", "num_draft_tokens": 4}),
    "ngram": ("llama-3.1-8b", 1, {"method": "ngram", "num_draft_tokens": 5, "task": "summarisation"}),
}


def test_every_method_is_covered():
    """The cases below name every method the scenario accepts."""
    assert set(SPECS) == set(SPECULATIVE_METHODS)


@pytest.mark.parametrize("method", sorted(SPECS))
def test_infer_json_with_speculation(method, tmp_path, capsys):
    """The CLI prints one JSON document that echoes the speculative section as a mapping, with the
    acceptance length given or predicted (a number in [1, k + 1])."""
    model, tp, spec = SPECS[method]
    sc = {"model": model, "hardware": "h200-sxm" if model == "deepseek-v3" else "h100-sxm",
          "cluster": {"num_devices": tp},
          "inference": {"tp": tp, "weights_dtype": "fp8", "kv_dtype": "fp8", "batch_size": 8,
                        "input_tokens": 1024, "output_tokens": 256, "speculative": spec}}
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(sc), encoding="utf-8")
    assert cli.main(["infer", str(path), "--json"]) in (0, None)
    out = json.loads(capsys.readouterr().out)
    echoed = out["inference"]["speculative"]
    assert echoed["method"] == method
    assert 1.0 <= echoed["acceptance_length"] <= spec["num_draft_tokens"] + 1
