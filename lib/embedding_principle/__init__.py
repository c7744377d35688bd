"""embedding_principle: the Embedding Principle of loss landscapes, executable.

One module per idea of paper A (Zhang, Zhang, Luo, Xu, NeurIPS 2021) and paper B (Zhang, Li, Zhang,
Luo, Xu, J. Mach. Learn. 2022):

* :mod:`~embedding_principle.network`    -- fully connected nets, the flat parameter vector theta
* :mod:`~embedding_principle.losses`     -- per-sample losses and their derivatives
* :mod:`~embedding_principle.backprop`   -- the papers' back-propagation recursions (f, g, z, e)
* :mod:`~embedding_principle.landscape`  -- R_S, gradient, exact Hessian, H = H^(1) + H^(2), inertia
* :mod:`~embedding_principle.critical`   -- a solver that polishes approximate critical points
* :mod:`~embedding_principle.embeddings` -- critical embeddings as affine maps theta -> A theta + c
* :mod:`~embedding_principle.reduction`  -- the inverse: the narrowest net computing the same function
* :mod:`~embedding_principle.training`   -- batched full-batch GD and Adam
* :mod:`~embedding_principle.cache`      -- cached experiments in ``data/`` (see also ``registry``)
* :mod:`~embedding_principle.data`       -- the data sets, all offline
* :mod:`~embedding_principle.plotting`   -- the book's single plotting style
* :mod:`~embedding_principle.diagrams`   -- network diagrams drawn from actual parameters
"""

import os as _os
import sys as _sys


def _default_progress() -> None:
    """Progress bars of long computations (training, cache recomputes) show only when someone watches.

    With ``EP_PROGRESS`` unset: on in a terminal or a Jupyter kernel, off otherwise. Executed builds and CI set
    ``EP_PROGRESS=0`` (the Makefile, ``tools/execute_notebooks.py``), so stored outputs never hold a progress bar.
    """
    watched = "ipykernel" in _sys.modules or bool(getattr(_sys.stderr, "isatty", lambda: False)())
    if "EP_PROGRESS" not in _os.environ and watched:
        _os.environ["EP_PROGRESS"] = "1"


_default_progress()

from .backprop import backprop, risk_and_grad  # noqa: E402
from .critical import ConvergenceError, CriticalPoint, find_critical_point
from .embeddings import (NULL, Embedding, compose, critical_subspace, equal_split, general_compatible, null,
                         split_operators, splitting, t_global, t_gn)
from .landscape import Inertia, Landscape, inertia
from .losses import Loss, get_loss
from .network import ACTIVATIONS, MLP, Activation
from .reduction import Reduction, reduce
from .training import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "MLP", "Activation", "ACTIVATIONS", "Loss", "get_loss", "backprop", "risk_and_grad",
    "Landscape", "Inertia", "inertia", "find_critical_point", "CriticalPoint", "ConvergenceError",
    "Embedding", "NULL", "general_compatible", "splitting", "null", "compose", "equal_split", "t_global", "t_gn",
    "split_operators", "critical_subspace", "reduce", "Reduction", "train", "TrainResult", "__version__",
]
