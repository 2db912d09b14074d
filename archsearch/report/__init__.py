"""The report: a study's top trials and Pareto front as text, a PNG plot and an HTML page."""
