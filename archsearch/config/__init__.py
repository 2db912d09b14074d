"""Configuration: the study file (its declared schema and the typed config), the training recipe, and where a study
is kept."""
