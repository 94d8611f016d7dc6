"""The DICE method itself, independent of any model or data set.

Inversion and editing (`api`, `inversion`), the two discrete processes (`masked`: Alg. 1 nested
masks; `multinomial`: Alg. 2 mask-and-replace with its `transitions`), Gumbel machinery, pseudo-inverses,
injection functions, guidance, lambda and masking schedules, conditions, the `DiscreteDenoiser`
protocol, the `checks` of every setting and saved field, mutual information, the regeneration
baseline sampler, untrained `toy` denoisers and the one atomic file writer. `core` imports nothing of
dicelib outside `core` except `dicelib.errors` (tests/core/test_layout.py reads the imports to
enforce it): models, tracks and experiments build on it, never the reverse.
"""
