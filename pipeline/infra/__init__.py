"""Infrastructure: the content-addressed cache and its ledger, atomic file writes, errors,
config checks, the hub switch, pinned PyPI wheels (every pin in ``wheels.PINS``), run
logging (W&B, CSV) and the named fault points of the kill-and-resume harness.

May import only ``pipeline.math``."""
