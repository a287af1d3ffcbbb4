"""Concept-level explanations: what the model responds to, not only where it looks.

- `tcav`: Testing with Concept Activation Vectors (Kim et al. 2018), with its random-set t-test;
- `discover_concepts`: concepts found in the CAM map by non-negative matrix factorisation
  (CRAFT, Fel et al. 2023), each with its exact share of the class logit through the GAP head;
- `sets`: concept images that exist offline (patterns, colours, textures, the planted mark, a folder).
"""
