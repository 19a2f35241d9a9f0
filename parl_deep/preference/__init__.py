"""Preference learning: teachers, segment-pair stores, the reward ensemble, query selection, SURF, the published
feedback presets, and the Term 2 estimators of A-PARL (:mod:`.hypergrad`, with the exact tabular bridge
:mod:`.tabular`)."""
