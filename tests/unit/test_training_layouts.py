"""Megatron-Core layouts whose first stage holds only the embedding and whose last holds only the
head and loss ("Et|(tt|)*30L", DeepSeek-V3 on GB200) train under every recompute and offload
setting (issue 19: a stage without layers crashed full recompute and activation offload)."""

import math

import pytest

from flopcast import api

BASE = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "cluster": {"num_devices": 32},
        "training": {"seq_len": 4096, "global_batch_seqs": 64}}


@pytest.mark.parametrize("extra", [{"recompute": "full"}, {"recompute": "none", "activation_offload": 0.5},
                                   {"recompute": "selective"}])
def test_embedding_only_and_loss_only_stages_train(extra):
    """pp 4 with a last stage of the head and loss only ([12, 10, 10, 0] transformer layers) and pp 4
    with a first stage of the embedding only ([0, 11, 11, 10]): finite step time and memory."""
    for layout in ("E" + "t" * 12 + "|(tttttttttt|)*2L", "E|(ttttttttttt|)*2ttttttttttL"):
        sc = {**BASE, "parallel": {"tp": 1, "pp": 4, "dp": 8, "pipeline_layout": layout, **extra}}
        d = api.estimate_training(sc).to_dict()
        assert math.isfinite(d["step_time_s"]) and d["step_time_s"] > 0
        assert math.isfinite(d["memory_per_device_bytes"]) and d["memory_per_device_bytes"] > 0
