"""``MusicGAN``: a conditional generator and critic over melody piano rolls, and their losses.

Rolls are laid out as in ``abcgen.models.pianoroll``: ``(batch, 2, bars, bar_steps, num_pitches)``, channel
0 sounding, channel 1 onset, in the white key of the tune's mode. The conditions are three indices per
example, ``(mode, meter, rhythm)``, into the value lists of ``MusicGANConfig`` (``rhythm`` index 0 is
``"none"``: no rhythm label); each becomes a learned embedding.

**Generator.** ``[z, conditions]`` -> MLP -> one code per bar -> a bar MLP shared by all bars (with the
conditions and the bar's position) -> per step, a softmax over ``num_pitches + 1`` classes (the last one
is "rest": a melody has at most one pitch a step) and an onset probability. Its output is *binary*, like
the real rolls: the most probable class sounds and the onset is set where its probability is > 0.5, with
straight-through gradients (the backward pass uses the probabilities; Bengio et al., 2013, as in
BinaryMuseGAN, Dong & Yang, 2018). With soft outputs the critic tells fakes apart by their blur alone
and the generator collapses to a few rolls (measured: 4-7 distinct rolls of 32 after 100-300 steps on
the quickstart corpus; 32 of 32 with straight-through outputs). Steps after the end of a bar of the
requested meter are 0, as in every real roll.

**Critic.** A bar encoder (MLP over ``2 * bar_steps * num_pitches`` values, shared by all bars, plus the
bar's position) -> the concatenated bar features and conditions -> MLP -> one score. No batch norm: the
gradient penalty is defined per example.

**Losses.** ``wgan-gp`` (Gulrajani et al., 2017): the critic minimises ``D(fake) - D(real) + λ (‖∇D(x̂)‖ -
1)²`` on random interpolates x̂, the generator minimises ``-D(fake)``; ``D(real) - D(fake)`` estimates the
Wasserstein distance. ``hinge`` (Miyato et al., 2018): the critic's linear layers get spectral
normalisation and it minimises ``relu(1 - D(real)) + relu(1 + D(fake))``; the generator again ``-D(fake)``.

Saved as a folder: ``config.json`` (``model_type: abcgen_gan``) and ``model.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abcgen.errors import ConfigError
from abcgen.models.pianoroll import RollGrid
from abcgen.notation.lexer import parse_fraction

MODEL_TYPE = "abcgen_gan"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LOSSES = ("wgan-gp", "hinge")
NO_RHYTHM = "none"


@dataclass
class MusicGANConfig:
    """Shapes, objective and condition vocabularies of a ``MusicGAN`` (everything ``from_pretrained`` needs)."""

    bars: int = 4
    steps_per_whole_note: int = 16
    bar_steps: int = 18
    lowest_pitch: int = 52
    num_pitches: int = 40
    latent_size: int = 64
    condition_size: int = 16  # embedding width of each condition
    generator_width: int = 256
    critic_width: int = 256
    loss: str = "wgan-gp"
    modes: list[str] = field(default_factory=lambda: ["major"])
    meters: list[str] = field(default_factory=lambda: ["4/4"])
    rhythms: list[str] = field(default_factory=lambda: [NO_RHYTHM])  # index 0 is always NO_RHYTHM
    default_key: str = "D major"  # used when generation names no key
    default_meter: str = "4/4"  # used when generation names no meter

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"MusicGAN loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if not self.rhythms or self.rhythms[0] != NO_RHYTHM:
            raise ConfigError(f"MusicGAN rhythms must start with {NO_RHYTHM!r} (no rhythm label), got {self.rhythms}")
        if not self.modes or not self.meters:
            raise ConfigError("MusicGAN needs at least one mode and one meter to condition on")
        for meter in self.meters:
            self.grid.steps_in_bar(_meter_length(meter))  # raises if the grid cannot hold the meter

    @property
    def grid(self) -> RollGrid:
        return RollGrid(self.bars, self.steps_per_whole_note, self.bar_steps, self.lowest_pitch, self.num_pitches)

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MusicGANConfig:
        data = dict(data)
        if data.pop("model_type", None) != MODEL_TYPE:
            raise ConfigError(f"not a MusicGAN config (model_type must be {MODEL_TYPE!r})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"MusicGAN config has unknown keys {unknown}: it was written by another abcgen version")
        return cls(**data)


def _meter_length(meter: str) -> Fraction:
    length = parse_fraction(meter)
    if length is None:
        raise ConfigError(f"meter {meter!r} has no bar length: give one such as 4/4 or 6/8")
    return length


class ConditionEmbedding(nn.Module):
    """``(batch, 3)`` indices (mode, meter, rhythm) -> ``(batch, 3 * condition_size)``."""

    def __init__(self, config: MusicGANConfig) -> None:
        super().__init__()
        self.mode = nn.Embedding(len(config.modes), config.condition_size)
        self.meter = nn.Embedding(len(config.meters), config.condition_size)
        self.rhythm = nn.Embedding(len(config.rhythms), config.condition_size)

    def forward(self, conditions: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mode(conditions[:, 0]), self.meter(conditions[:, 1]), self.rhythm(conditions[:, 2])], -1)


class RollGenerator(nn.Module):
    """``(z (batch, latent_size), conditions (batch, 3))`` -> rolls ``(batch, 2, bars, bar_steps, num_pitches)``
    of 0/1 values whose gradients are those of the underlying probabilities (straight-through)."""

    def __init__(self, config: MusicGANConfig) -> None:
        super().__init__()
        self.config = config
        width, cond = config.generator_width, 3 * config.condition_size
        self.conditions = ConditionEmbedding(config)
        self.tune = nn.Sequential(nn.Linear(config.latent_size + cond, width), nn.LeakyReLU(0.2),
                                  nn.Linear(width, config.bars * width), nn.LeakyReLU(0.2))
        self.bar_position = nn.Embedding(config.bars, config.condition_size)
        self.bar = nn.Sequential(
            nn.Linear(width + cond + config.condition_size, width), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.LeakyReLU(0.2),
            nn.Linear(width, config.bar_steps * (config.num_pitches + 2)),  # pitches + rest, and an onset logit
        )
        # (meters, bar_steps): 1 inside a bar of that meter; derived from the config, so not saved.
        grid = config.grid
        masks = np.stack([grid.step_mask(_meter_length(m)) for m in config.meters]).astype(np.float32)
        self.register_buffer("step_masks", torch.from_numpy(masks), persistent=False)

    def forward(self, z: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch = z.shape[0]
        cond = self.conditions(conditions)
        codes = self.tune(torch.cat([z, cond], -1)).view(batch, c.bars, c.generator_width)
        position = self.bar_position.weight.unsqueeze(0).expand(batch, -1, -1)
        per_bar = torch.cat([codes, cond.unsqueeze(1).expand(-1, c.bars, -1), position], -1)
        logits = self.bar(per_bar).view(batch, c.bars, c.bar_steps, c.num_pitches + 2)
        classes = straight_through(logits[..., : c.num_pitches + 1].softmax(-1), one_hot=True)
        sounding = classes[..., : c.num_pitches]  # the rest class dropped
        onset = straight_through(torch.sigmoid(logits[..., -1:]), one_hot=False) * sounding
        mask = self.step_masks[conditions[:, 1]].view(batch, 1, 1, c.bar_steps, 1)
        return torch.stack([sounding, onset], 1) * mask


class _PassGradient(torch.autograd.Function):
    """Forward: ``hard`` (exact 0/1 values; ``hard + p - p`` would round 1 to 0.99999994). Backward: the
    incoming gradient goes to ``probs`` unchanged."""

    @staticmethod
    def forward(ctx: Any, probs: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(probs: torch.Tensor, one_hot: bool) -> torch.Tensor:
    """0/1 values in the forward pass (the argmax of the last axis as one-hot, or ``probs > 0.5``) with the
    gradient of ``probs`` in the backward pass."""
    if one_hot:
        hard = nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    else:
        hard = (probs > 0.5).to(probs.dtype)
    return _PassGradient.apply(probs, hard)


class RollCritic(nn.Module):
    """``(rolls (batch, 2, bars, bar_steps, num_pitches), conditions (batch, 3))`` -> scores ``(batch,)``."""

    def __init__(self, config: MusicGANConfig) -> None:
        super().__init__()
        self.config = config
        width, cond = config.critic_width, 3 * config.condition_size
        self.conditions = ConditionEmbedding(config)
        self.bar = nn.Sequential(nn.Linear(2 * config.bar_steps * config.num_pitches, width), nn.LeakyReLU(0.2),
                                 nn.Linear(width, width), nn.LeakyReLU(0.2))
        self.bar_position = nn.Parameter(torch.zeros(config.bars, width))
        self.head = nn.Sequential(nn.Linear(config.bars * width + cond, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))
        if config.loss == "hinge":
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.utils.parametrizations.spectral_norm(module)

    def forward(self, rolls: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        batch, _, bars, steps, pitches = rolls.shape
        per_bar = rolls.permute(0, 2, 1, 3, 4).reshape(batch, bars, 2 * steps * pitches)
        features = (self.bar(per_bar) + self.bar_position).reshape(batch, -1)
        return self.head(torch.cat([features, self.conditions(conditions)], -1)).squeeze(-1)


class MusicGAN(nn.Module):
    """The generator and the critic, their config, and folder save/load."""

    def __init__(self, config: MusicGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = RollGenerator(config)
        self.critic = RollCritic(config)

    # --- conditions and sampling ------------------------------------------------------------------------

    def condition_ids(self, mode: str, meter: str, rhythm: str = "") -> list[int]:
        """Indices of one example's conditions; ConfigError naming the valid values for an unknown one."""
        c = self.config
        rhythm = rhythm or NO_RHYTHM
        for name, value, values in (("mode", mode, c.modes), ("meter", meter, c.meters), ("rhythm", rhythm, c.rhythms)):
            if value not in values:
                raise ConfigError(f"{name} {value!r} was not in this GAN's training data: choose one of {', '.join(values)}")
        return [c.modes.index(mode), c.meters.index(meter), c.rhythms.index(rhythm)]

    def sample_latent(self, num: int, seed: int) -> torch.Tensor:
        """``(num, latent_size)`` standard normal draws from a generator seeded with ``seed`` (not the global RNG)."""
        return torch.randn(num, self.config.latent_size, generator=torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def generate_rolls(self, z: torch.Tensor, conditions: torch.Tensor) -> np.ndarray:
        """Rolls ``(batch, 2, bars, bar_steps, num_pitches)`` as uint8 arrays for ``roll_to_abc``."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            rolls = self.generator(z.to(self.device), conditions.to(self.device))
        finally:
            self.generator.train(was_training)
        return (rolls > 0.5).to(torch.uint8).cpu().numpy()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- saving ---------------------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1), encoding="utf-8")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt", "model_type": MODEL_TYPE})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> MusicGAN:
        """Load a folder written by ``save_pretrained`` (strict: every weight must match the config)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not is_gan_folder(folder):
            raise ConfigError(f"{folder} is not a MusicGAN folder: it needs {CONFIG_NAME} with model_type "
                              f"{MODEL_TYPE!r} and {WEIGHTS_NAME} (train one with model.architecture=gan)")
        config = MusicGANConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")))
        model = cls(config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=True)
        return model.eval()


def is_gan_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a MusicGAN (its ``config.json`` says ``model_type: abcgen_gan``)."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file() or not (Path(path) / WEIGHTS_NAME).is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (json.JSONDecodeError, AttributeError):
        return False


def count_parameters(model: MusicGAN) -> dict[str, int]:
    return {"generator": sum(p.numel() for p in model.generator.parameters()),
            "critic": sum(p.numel() for p in model.critic.parameters()),
            "total": sum(p.numel() for p in model.parameters())}


# --- losses ------------------------------------------------------------------------------------------------

def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, conditions: torch.Tensor, loss: str,
                gp_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The critic's loss on one batch (``fake`` detached from the generator) and what to log:
    ``wasserstein`` = mean D(real) - mean D(fake), ``gradient_penalty`` (wgan-gp only).

    Real, fake and (for wgan-gp) interpolated rolls go through the critic in one forward pass, so a
    DistributedDataParallel critic sees one forward per backward."""
    batch = real.shape[0]
    if loss == "wgan-gp":
        alpha = torch.rand(batch, 1, 1, 1, 1, device=real.device, dtype=real.dtype)
        between = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        scores = critic(torch.cat([real, fake, between]), conditions.repeat(3, 1))
        real_score, fake_score, between_score = scores.split(batch)
        gradients, = torch.autograd.grad(between_score.sum(), between, create_graph=True)
        penalty = ((gradients.flatten(1).norm(dim=1) - 1) ** 2).mean()
        value = fake_score.mean() - real_score.mean() + gp_weight * penalty
        extra = {"gradient_penalty": float(penalty.detach())}
    elif loss == "hinge":
        scores = critic(torch.cat([real, fake]), conditions.repeat(2, 1))
        real_score, fake_score = scores.split(batch)
        value = torch.relu(1 - real_score).mean() + torch.relu(1 + fake_score).mean()
        extra = {}
    else:
        raise ConfigError(f"gan.loss={loss!r} is not one of {', '.join(LOSSES)}")
    wasserstein = real_score.detach().mean() - fake_score.detach().mean()
    return value, {"critic_loss": float(value.detach()), "wasserstein": float(wasserstein), **extra}


def generator_loss(critic: nn.Module, fake: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """``-mean D(fake)``: the generator's loss for both objectives."""
    return -critic(fake, conditions).mean()
