"""PIE-Bench (paper Tables 1-3) on real image models: `loader` reads the benchmark, `metrics` holds
the perceptual metrics (DINO, CLIP, LPIPS; absent rather than 0 without weights) and `experiment`
runs reconstruction and editing and writes the tables. May import `core`, `adapters`, `registry`,
`errors`, `io` and `config`.
"""
