"""Progress bars show only when someone watches: EP_PROGRESS's default at import (embedding_principle.__init__)."""
import os
import subprocess
import sys

import pytest

PROBE = "import os, embedding_principle; print(os.environ.get('EP_PROGRESS'))"


def _probe(env_value: str | None, prelude: str = "") -> str:
    env = {k: v for k, v in os.environ.items() if k != "EP_PROGRESS"}
    if env_value is not None:
        env["EP_PROGRESS"] = env_value
    out = subprocess.run([sys.executable, "-c", prelude + PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_off_when_nobody_watches():          # stderr is a pipe, no Jupyter kernel
    assert _probe(None) == "None"


def test_on_in_a_jupyter_kernel():
    pytest.importorskip("ipykernel")
    assert _probe(None, "import ipykernel; ") == "1"


@pytest.mark.parametrize("value", ["0", "1"])
def test_an_explicit_setting_wins(value):
    assert _probe(value, "import ipykernel; ") == value
