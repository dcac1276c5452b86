"""ODPO pipeline: SFT -> sampling -> scoring -> pairs -> DPO/ODPO -> evaluation -> figures."""

import os
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Resolvers used by conf/: the directory the user runs from, and the project checkout
# (for files the project ships, such as the micro-scale fixture).
OmegaConf.register_new_resolver("cwd", os.getcwd, replace=True)
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
