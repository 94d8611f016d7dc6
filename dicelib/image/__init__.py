"""The image track on the embedded default: ShapesBench and its two denoisers (notebooks 00, 02-04).

`shapesbench` generates and parses the scenes, `benchmark_build` is the `data` stage, `shapes_model`
and `train_shapes` the learned denoiser and its stage, `shapes_oracle` the exact one, `models` the
two as the notebooks compare them, `shapes_image_model` their image-level wrapper for the CLI,
`metrics` the exact image scores, `reconstruction` / `editing` / `walkthrough` the evaluations behind
the notebooks and `plotting` their figures, `explore` / `explore_ui` notebook 07's interactive explorer
(a plain update function and its ipywidgets panel); `shapes_sweep` is the `shapes-sweep` stage (a
`dicelib.sweep` task). May import `core`, `adapters`, `sweep`, `errors`, `io` and `config`;
nothing outside the notebooks, `registry` and `cli` imports it.
"""
