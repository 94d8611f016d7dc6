"""The image track on the embedded default: ShapesBench and the `shapes` model (notebooks 00, 02-04).

`shapesbench` generates and parses the scenes, `benchmark_build` is the `data` stage, `shapes_oracle`
the exact denoiser, `shapes_model` and `train_shapes` the learned one and its stage, `shapes_image_model`
the image-level wrapper for the CLI, `metrics` the exact image scores, `reconstruction` / `editing` / `walkthrough` the
evaluations behind the notebooks and `plotting` their figures. May import `core`, `adapters`,
`errors`, `io` and `config`; nothing outside the notebooks, `registry` and `cli` imports it.
"""
