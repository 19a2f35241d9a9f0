"""Regression: batched torch.linalg.solve must be right at sizes where a bad thread setting breaks it.

The project never calls torch.set_num_threads(k) with k >= 2 (on these machines it made batched solves of
~150+ sized systems return wrong numbers); threads are set through OMP_NUM_THREADS instead."""
import pathlib

import torch


def test_batched_200x200_solve_residual():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(32, 200, 200, dtype=torch.float64, generator=g) + 20 * torch.eye(200, dtype=torch.float64)
    b = torch.randn(32, 200, 3, dtype=torch.float64, generator=g)
    x = torch.linalg.solve(A, b)
    assert (A @ x - b).abs().max() < 1e-10


def test_no_source_file_sets_more_than_one_torch_thread():
    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = []
    for path in root.glob("*/**/*.py"):
        if ".venv" in path.parts or path.name == pathlib.Path(__file__).name:
            continue
        for line in path.read_text().splitlines():
            if "set_num_threads(" in line and "set_num_threads(1)" not in line:
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders, offenders
