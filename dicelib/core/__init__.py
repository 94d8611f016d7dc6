"""The DICE and VARIN methods themselves, independent of any model or data set.

Inversion and editing (`api`, `inversion`), VARIN for next-scale models (`next_scale`, its baselines in
`next_scale_baselines`), the two discrete processes (`masked`: Alg. 1 nested
masks; `multinomial`: Alg. 2 mask-and-replace with its `transitions`), Gumbel machinery, pseudo-inverses,
injection functions, guidance, lambda and masking schedules, conditions, the `DiscreteDenoiser`
and `NextScaleDenoiser` protocols, the `checks` of every setting and saved field, mutual information, the regeneration
baseline sampler, untrained `toy` denoisers and the one atomic file writer. `core` imports nothing of
dicelib outside `core` except `dicelib.errors` (tests/core/test_layout.py reads the imports to
enforce it): models, tracks and experiments build on it, never the reverse.
"""

from .api import edit, edit_grid, invert, reconstruct
from .inversion import Inversion
from .next_scale_baselines import regenerate_next_scale, target_only_edit
from .protocol import DiscreteDenoiser, NextScaleDenoiser

__all__ = ["DiscreteDenoiser", "Inversion", "NextScaleDenoiser", "edit", "edit_grid", "invert", "reconstruct",
           "regenerate_next_scale", "target_only_edit"]
