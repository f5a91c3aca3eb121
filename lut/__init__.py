"""Per-op latency lookup tables (LETI / ChamNet style): see the LUT issue."""
