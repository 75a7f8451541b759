"""Components of the DFC system, each implementing one equation of the paper."""
