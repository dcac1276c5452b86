"""``python -m scripts.bench``: see ``scripts/bench/__init__.py``."""

from scripts.bench.child import quiet_env

quiet_env()  # before torch is imported

from scripts.bench.run import main  # noqa: E402

main()
