"""parl verify: the verification suite of PARL's lemmas, theorem and gradient formulas on exact oracles."""
__version__ = "0.1.0"
