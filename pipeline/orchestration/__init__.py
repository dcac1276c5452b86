"""Orchestration, the top layer: the stage graph and its walk (``graph``), one run
(``main``), what it records (``record``), which weights it keeps (``retention``), the
results fingerprint, start-up validation, the sweep's disk check and the Hydra callbacks.

May import every layer below."""
