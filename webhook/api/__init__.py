"""HTTP layers: one blueprint per caller contract, all over the same analysis."""
