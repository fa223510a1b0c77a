"""Benchmarking: latency harness, device profiles, roofline estimates, remote/fleet runs, reports."""
