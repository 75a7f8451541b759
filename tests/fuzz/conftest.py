"""The fuzzing harness runs by hand (``python tests/fuzz/fuzz_cli.py``), not under pytest."""

collect_ignore = ["fuzz_cli.py"]
