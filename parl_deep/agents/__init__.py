"""Agents: SAC (the algorithm, :mod:`.sac`) and its speed code (:mod:`.fused`)."""
