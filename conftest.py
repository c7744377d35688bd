"""Root pytest configuration: shared by the unit tests and by nbval on the notebooks.

Notebook kernels are separate processes; they inherit this environment, so progress bars stay off
(EP_PROGRESS=0) and notebooks compare cleanly under nbval.
"""
import os

os.environ.setdefault("EP_PROGRESS", "0")
os.environ.setdefault("PYTHONHASHSEED", "0")
