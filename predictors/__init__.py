"""Learned latency predictors (BRP-NAS-style GCN): see the predictor issue."""
