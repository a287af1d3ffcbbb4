"""Measuring explanations: localisation (grid pointing game), faithfulness (deletion / insertion)
and sanity (cascading randomisation), for every method and for negative-control baselines."""
