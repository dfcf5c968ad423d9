"""The error bands of the training estimator, each with the command that measures it. A search treats
plans whose step times lie within TIME_BAND_FRAC of the best as ties, and a plan whose memory is
within MEMORY_BAND_FRAC of device capacity as marginal (it may not fit when run)."""

# Leave-one-source-out median |error| of the training step time under the shipped profile:
# `flopcast validate training --cv source --json` -> cv_median_abs_error_frac (0.0730 over the 13
# source families of validation/; the shipped profile records the same figure, which a test checks).
TIME_BAND_FRAC = 0.0730

# The per-rank memory band: the leave-one-source-out median |error| of the peak memory per device,
# `flopcast validate memory --cv source --json` -> cv_median_abs_error_frac (defined, with its test,
# beside the memory model).
from flopcast.estimate.training.memory import MEMORY_BAND_FRAC  # noqa: E402

__all__ = ["MEMORY_BAND_FRAC", "TIME_BAND_FRAC"]
