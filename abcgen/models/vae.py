"""``MusicVAE``: a sequence VAE over tunes or N-bar phrases, in the music tokenizer's token space.

Shapes below: ``B`` batch, ``T`` decoder length, ``S`` segment body length, ``V`` vocabulary, ``D`` latent
size, ``L`` GRU layers, ``H`` hidden size.

**Encoder.** Token embeddings of the segment's *body* (the bars, without header or control prefix) ->
a bidirectional GRU -> the last layer's final forward and backward states, concatenated -> a linear map
to the posterior mean ``mu`` and log-variance ``logvar`` (each ``(B, D)``). The header and the conditions
are the decoder's prompt, so the latent is free to hold the melody rather than the key or the meter:
two tunes in different keys can be interpolated and decoded under either header.

**Decoder.** An autoregressive GRU over ``[BOS] + control prefix + header + body + EOS`` (the layout of the
LM's training examples, so the pipeline's prompts and ``AbcLogitsProcessor`` work unchanged). The latent
``z`` enters twice: ``tanh(W z)`` is the initial state of every layer, and ``z`` is concatenated to the
embedding at every step, so a long tune cannot wash it out of the state.

**Generation.** ``model.generate(input_ids, latent=z, logits_processor=[AbcLogitsProcessor(...)])``: the
latent is a model keyword argument (``(B, D)``; ``generate`` repeats it for ``num_return_sequences``).
Without one, the first forward draws ``z ~ N(0, I)`` from the global torch RNG -- which is how the
``abc-generation`` pipeline (seeded with ``torch.manual_seed``) samples from the prior -- and the drawn
latent is kept for the rest of the call. The GRU state is carried between steps as ``decoder_state``
(there is no key/value cache). Prompts of different lengths may be left- or right-padded: rows are
compacted to their real tokens before the GRU (``attention_mask``), so padding never enters the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from abcgen.errors import ConfigError
from abcgen.models.vae_config import MODEL_TYPE, MusicVaeConfig, register_auto_config


@dataclass
class MusicVaeOutput(ModelOutput):
    """``logits`` ``(B, T, V)``; ``latent`` the ``z`` decoded ``(B, D)``; ``mu``/``logvar`` ``(B, D)`` when the
    encoder ran; ``decoder_state`` ``(L, B, H)`` after the last position (with ``use_cache``)."""

    logits: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    decoder_state: torch.Tensor | None = None


def run_gru(gru: nn.GRU, inputs: torch.Tensor, attention_mask: torch.Tensor | None,
            state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru`` over each row's real tokens only (``attention_mask`` 1), whatever side the padding is on.

    ``inputs`` ``(B, T, E)``; returns outputs ``(B, T, H * directions)`` at the original positions (zeros
    at padding) and the final state ``(L * directions, B, H)`` after each row's last real token. Rows are
    compacted (a stable sort puts each row's real positions first, in order), packed, run, and scattered
    back, so a left-padded prompt starts from the initial state exactly as an unpadded one does."""
    if attention_mask is None or bool(attention_mask.all()):
        return gru(inputs, state)
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError("a row of the batch has no real token (attention_mask is all zeros)")
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # (B, T): real positions first
    compact = inputs.gather(1, order.unsqueeze(-1).expand_as(inputs))
    packed = pack_padded_sequence(compact, lengths.cpu(), batch_first=True, enforce_sorted=False)
    packed_out, state = gru(packed, state)
    out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=inputs.shape[1])
    restored = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
    return restored, state


class MusicVAE(PreTrainedModel, GenerationMixin):
    """Bidirectional-GRU encoder to ``(mu, logvar)``, GRU decoder conditioned on ``z``; see the module
    docstring. ``forward`` encodes when given ``encoder_input_ids`` (sampling ``z`` in training mode, ``mu``
    in eval mode), else decodes the given ``latent`` (or one drawn from the prior)."""

    config_class = MusicVaeConfig
    base_model_prefix = "vae"
    main_input_name = "input_ids"
    _is_stateful = True  # a recurrent state, not a cache that can be cut back (no assisted decoding)
    _no_split_modules: list[str] = []

    def __init__(self, config: MusicVaeConfig) -> None:
        super().__init__(config)
        c = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=c.pad_token_id)
        self.encoder = nn.GRU(c.embedding_size, c.encoder_hidden_size, num_layers=c.encoder_layers,
                              batch_first=True, bidirectional=True)
        self.to_posterior = nn.Linear(2 * c.encoder_hidden_size, 2 * c.latent_size)
        self.latent_to_state = nn.Linear(c.latent_size, c.decoder_layers * c.decoder_hidden_size)
        self.decoder = nn.GRU(c.embedding_size + c.latent_size, c.decoder_hidden_size, num_layers=c.decoder_layers,
                              batch_first=True)
        self.lm_head = nn.Linear(c.decoder_hidden_size, c.vocab_size)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """GRUs: Xavier input weights, orthogonal recurrent weights (keeps the state's scale over long
        tunes), zero biases. Everything else as transformers does it."""
        if isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)
                else:
                    init.zeros_(param)
        else:
            super()._init_weights(module)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # --- the two halves ---------------------------------------------------------------------------------

    def encode(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(B, D)``, of segment bodies ``input_ids`` ``(B, S)`` (padding: mask 0)."""
        _, state = run_gru(self.encoder, self.embed_tokens(input_ids), attention_mask, None)
        last_forward, last_backward = state[-2], state[-1]  # the top layer's two directions, (B, H) each
        mu, logvar = self.to_posterior(torch.cat([last_forward, last_backward], dim=-1)).chunk(2, dim=-1)
        return mu, logvar

    def initial_state(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder's initial state ``(L, B, H)`` from ``latent`` ``(B, D)``."""
        c = self.config
        state = torch.tanh(self.latent_to_state(latent))  # (B, L * H)
        return state.view(-1, c.decoder_layers, c.decoder_hidden_size).transpose(0, 1).contiguous()

    def decode(self, input_ids: torch.Tensor, latent: torch.Tensor, attention_mask: torch.Tensor | None = None,
               state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, T, V)`` and the state after the last real token, continuing ``state`` when given."""
        embeddings = self.embed_tokens(input_ids)
        steps = torch.cat([embeddings, latent.unsqueeze(1).expand(-1, input_ids.shape[1], -1)], dim=-1)
        if state is None:
            state = self.initial_state(latent)
        out, state = run_gru(self.decoder, steps, attention_mask, state)
        return self.lm_head(out), state

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        encoder_input_ids: torch.LongTensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        decoder_state: torch.Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> MusicVaeOutput:
        """Decode ``input_ids`` ``(B, T)`` under a latent: the given ``latent``, else the posterior of
        ``encoder_input_ids`` (a sample ``mu + sigma * eps`` in training mode, ``mu`` in eval mode), else a
        draw from the prior ``N(0, I)`` (global torch RNG). ``decoder_state`` continues a previous call
        (generation). ``return_dict`` is accepted for ``generate``; the output is always a ``MusicVaeOutput``."""
        mu = logvar = None
        if encoder_input_ids is not None:
            mu, logvar = self.encode(encoder_input_ids, encoder_attention_mask)
            if latent is None:
                latent = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        if latent is None:
            if decoder_state is not None:
                raise ConfigError("decoder_state was given without its latent: the latent is an input at every "
                                  "step; pass the same latent= again")
            latent = torch.randn(input_ids.shape[0], self.config.latent_size, device=input_ids.device,
                                 dtype=self.embed_tokens.weight.dtype)
        logits, state = self.decode(input_ids, latent, attention_mask, decoder_state)
        keep_state = use_cache if use_cache is not None else not self.training
        return MusicVaeOutput(logits=logits, latent=latent, mu=mu, logvar=logvar,
                              decoder_state=state if keep_state else None)

    # --- generate() ---------------------------------------------------------------------------------------

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The decoder's memory is the GRU state (``decoder_state``), not a key/value cache.
        return False

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                                      latent: torch.Tensor | None = None, decoder_state: torch.Tensor | None = None,
                                      use_cache: bool = True, **kwargs: object) -> dict[str, object]:
        """The whole prompt first, then only the newest token with the carried state. Without
        ``use_cache`` every step re-reads the whole sequence (slower, same result)."""
        if decoder_state is not None and use_cache:
            return {"input_ids": input_ids[:, -1:], "latent": latent, "decoder_state": decoder_state,
                    "use_cache": True}
        return {"input_ids": input_ids, "attention_mask": attention_mask, "latent": latent, "use_cache": use_cache}

    def _update_model_kwargs_for_generation(self, outputs: ModelOutput, model_kwargs: dict[str, object],
                                            is_encoder_decoder: bool = False,
                                            num_new_tokens: int = 1) -> dict[str, object]:
        model_kwargs["latent"] = outputs.latent  # a latent drawn from the prior at the first step stays fixed
        if model_kwargs.get("use_cache", True):
            model_kwargs["decoder_state"] = outputs.decoder_state
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, num_new_tokens)


# --- the objective --------------------------------------------------------------------------------------


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row and dimension, in nats: ``(B, D)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_per_dimension: torch.Tensor, free_bits: float) -> torch.Tensor:
    """The KL term that is optimised: ``sum_d max(free_bits, mean_b KL[b, d])`` (Kingma et al. 2016).

    A dimension whose batch-mean KL is under ``free_bits`` nats gets no gradient from the KL, so the
    encoder can put that much information in every dimension for free -- the decoder then has a reason
    to read the latent instead of ignoring it (posterior collapse). 0 = the plain KL."""
    return torch.clamp(kl_per_dimension.mean(dim=0), min=free_bits).sum()


def kl_weight_at(step: int, anneal_steps: int, final_weight: float) -> float:
    """Linear KL annealing (Bowman et al. 2016): the weight grows from 0 at step 0 to ``final_weight`` at
    ``anneal_steps`` and stays there; ``anneal_steps`` 0 = ``final_weight`` from the start."""
    if anneal_steps <= 0:
        return final_weight
    return final_weight * min(1.0, step / anneal_steps)


def active_units(means: torch.Tensor, threshold: float = 0.01) -> tuple[int, list[float]]:
    """Active latent dimensions (Burda et al. 2016): those whose posterior mean varies across the data,
    ``Var_x(E[z|x]) > threshold``. ``means`` ``(N, D)``, one row per segment; returns the count and each
    dimension's variance. A collapsed dimension has the same mean for every input."""
    if means.shape[0] < 2:
        raise ValueError("active units need the posterior means of at least 2 segments")
    variances = means.double().var(dim=0, unbiased=True)
    return int((variances > threshold).sum()), [float(v) for v in variances]


# --- latents --------------------------------------------------------------------------------------------


def sample_latents(num: int, latent_size: int, seed: int) -> torch.Tensor:
    """``num`` draws from the prior ``N(0, I)``, ``(num, latent_size)``, from a generator of their own:
    the same seed gives the same latents whatever else used the global RNG."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num, latent_size, generator=generator)


def slerp(start: torch.Tensor, end: torch.Tensor, fraction: float) -> torch.Tensor:
    """Spherical interpolation between two latents ``(D,)`` at ``fraction`` in [0, 1]; exactly ``start`` at
    0 and ``end`` at 1.

    Why not a straight line: most of a D-dimensional Gaussian's mass lies near the sphere of radius
    ``sqrt(D)``, and the midpoint of a straight line between two such points is ``1/sqrt(2)`` as long --
    a region the decoder has rarely seen. Along the great circle the norm stays in that shell (White,
    *Sampling Generative Networks*, 2016; MusicVAE interpolates the same way). Nearly parallel latents
    fall back to the straight line, which is then the same path."""
    if fraction <= 0.0:
        return start.clone()
    if fraction >= 1.0:
        return end.clone()
    a, b = start.double(), end.double()
    cosine = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    angle = math.acos(float(cosine.clamp(-1.0, 1.0)))
    if math.sin(angle) < 1e-6:
        mixed = (1.0 - fraction) * a + fraction * b
    else:
        mixed = (math.sin((1.0 - fraction) * angle) * a + math.sin(fraction * angle) * b) / math.sin(angle)
    return mixed.to(start.dtype)


def register_auto_classes() -> None:
    """Register ``MusicVAE`` with ``AutoModelForCausalLM`` (and its config with ``AutoConfig``); idempotent.
    ``import abcgen`` arranges for this to run (``abcgen._lazy_registration``), so ``from_pretrained`` and the
    ``abc-generation`` pipeline (which then samples from the prior) load a VAE folder."""
    from transformers import AutoModelForCausalLM

    register_auto_config()
    AutoModelForCausalLM.register(MusicVaeConfig, MusicVAE, exist_ok=True)


__all__ = ["MODEL_TYPE", "MusicVAE", "MusicVaeConfig", "MusicVaeOutput", "active_units", "free_bits_kl",
           "gaussian_kl", "kl_weight_at", "register_auto_classes", "run_gru", "sample_latents", "slerp"]
