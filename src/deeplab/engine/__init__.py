"""Training, evaluation and CRF parameter search loops over data sets."""
