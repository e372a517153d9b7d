"""Side-by-side speed and quality benchmarks (not run as timed tests)."""
