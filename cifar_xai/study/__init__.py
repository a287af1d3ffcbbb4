"""A human-inspection study of a model's explanations (issue 33): the design (which images, which
conditions, who sees what in which order) as data written before anyone answers, the raters'
answers as append-only records, and the statistics with their intervals. No web code here."""
