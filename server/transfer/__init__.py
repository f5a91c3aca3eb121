"""Few-shot transfer predictors: plan a new device's measurements, fit and register."""
