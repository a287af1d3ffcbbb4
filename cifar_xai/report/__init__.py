"""Reports of a trained model: the evaluation written as HTML, JSON and TensorBoard summaries."""
