"""Jobs that run a model over data: training and evaluation."""
