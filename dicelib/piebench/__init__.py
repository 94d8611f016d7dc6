"""PIE-Bench (paper Tables 1-3) on real image models: `loader` reads the benchmark, `metrics` holds
the perceptual metrics (DINO, CLIP, LPIPS; absent rather than 0 without weights) and `experiment`
runs reconstruction and editing (a `dicelib.sweep` task: this machine or a Ray cluster) and writes
the tables. May import `core`, `adapters`, `registry`, `sweep`, `errors`, `io` and `config`.
"""
