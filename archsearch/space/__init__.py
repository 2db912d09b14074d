"""The search space: its file and sampling, budget fitting, and the seed baselines."""
