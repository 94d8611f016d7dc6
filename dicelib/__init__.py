"""dicelib: discrete inversion for controllable editing (DICE) of masked generative models,
multinomial diffusion and masked language models.

    inv = dicelib.invert(model, x0, cond, method="masked", steps=32, tau=1.0, pseudo_inverse="onehot")
    x = dicelib.edit(model, inv, cond_target, lambda1=0.7, lambda2=0.3)
"""

from .api import edit, invert, reconstruct
from .errors import DiceError, InversionFileError, MissingWeightsError
from .inversion import Inversion
from .protocol import DiscreteDenoiser
from .schedules import LambdaSchedule
from .transitions import MultinomialSchedule

__all__ = [
    "DiceError",
    "DiscreteDenoiser",
    "Inversion",
    "InversionFileError",
    "LambdaSchedule",
    "MissingWeightsError",
    "MultinomialSchedule",
    "edit",
    "invert",
    "reconstruct",
]
__version__ = "0.1.0"
