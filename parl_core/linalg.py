"""The one linear solver of the engine: (I - gamma P_pi) x = b, or its transpose.

Every exact quantity of parl_core reduces to it: policy evaluation v = (I - gamma P_pi)^-1 r_pi, discounted
occupancy d = (I - gamma P_pi)^-T mu, and the adjoint solve of the soft-Bellman hypergradient.
Small systems are solved densely. Large sparse ones use restarted GMRES started from the Neumann series:
a direct sparse LU of a random transition graph fills in badly, while the spectral radius of gamma P_pi is
at most gamma < 1, so Krylov iterations converge geometrically.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

DENSE_LIMIT = 2500


class SolveError(RuntimeError):
    pass


def solve_discounted(P_pi: sp.csr_matrix | np.ndarray, gamma: float, b: np.ndarray, *,
                     transpose: bool = False, rtol: float = 1e-13) -> np.ndarray:
    """Solve (I - gamma P_pi) x = b (or the transposed system) for b of shape (S,) or (S, k)."""
    S = P_pi.shape[0]
    b = np.asarray(b, dtype=np.float64)
    if S <= DENSE_LIMIT:
        M = P_pi.toarray() if sp.issparse(P_pi) else np.asarray(P_pi)
        M = np.eye(S) - gamma * (M.T if transpose else M)
        return np.linalg.solve(M, b)
    Pt = (P_pi.T.tocsr() if transpose else P_pi) if sp.issparse(P_pi) else sp.csr_matrix(
        P_pi.T if transpose else P_pi)
    op = spla.LinearOperator((S, S), matvec=lambda x: x - gamma * (Pt @ x), dtype=np.float64)
    cols = b.reshape(S, -1)
    out = np.empty_like(cols)
    for j in range(cols.shape[1]):
        rhs = cols[:, j]
        x0 = rhs + gamma * (Pt @ rhs)  # two Neumann terms as a warm start
        x, info = spla.gmres(op, rhs, x0=x0, rtol=rtol, atol=0.0, restart=60, maxiter=200)
        if info != 0:
            raise SolveError(f"GMRES did not converge (info={info}) for an {S}-state system")
        out[:, j] = x
    return out.reshape(b.shape)
