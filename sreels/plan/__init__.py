"""Experiment planning: the precision of every number before the beam time (issue 14).

- :mod:`.design`: a design (scenario, instrument, detector, on-chip row binning) and the
  changes ``--vary`` makes to it;
- :mod:`.fisher`: the joint fit's Fisher information from Jacobians of its model, for any
  exposure per window and readout noise without rebuilding the model;
- :mod:`.planner`: predicted 1-sigma of the derived numbers and per-row profiles (joint fit and
  fast path), exposures that reach targets, the critical dose, trade-off tables;
- :mod:`.commands`: ``sreels plan``.
"""
