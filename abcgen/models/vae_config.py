"""``MusicVaeConfig``: the shape of ``abcgen.models.vae.MusicVAE`` and how its segments were cut.

A module of its own, apart from the model, for the reason ``lstm_config.py`` gives: ``AutoConfig`` must
know the ``abcgen_vae`` model type as soon as transformers' auto-config module is imported
(``abcgen._lazy_registration``), and this file needs only ``transformers.configuration_utils``. The model
module is imported, and ``MusicVAE`` registered with ``AutoModelForCausalLM``, when the first config is made.
"""

from __future__ import annotations

from transformers.configuration_utils import PreTrainedConfig

MODEL_TYPE = "abcgen_vae"


class MusicVaeConfig(PreTrainedConfig):
    """Sizes of ``MusicVAE`` and how its segments were cut (``segment_bars``: 0 = whole tunes, N = N bars),
    so that encoding a tune later cuts it the same way."""

    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = 512,
        embedding_size: int = 64,
        encoder_hidden_size: int = 128,
        encoder_layers: int = 1,
        decoder_hidden_size: int = 256,
        decoder_layers: int = 1,
        latent_size: int = 32,
        segment_bars: int = 0,
        max_tokens: int = 256,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        **kwargs: object,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_layers = encoder_layers
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_layers = decoder_layers
        self.latent_size = latent_size
        self.segment_bars = segment_bars
        self.max_tokens = max_tokens
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        kwargs.setdefault("tie_word_embeddings", False)  # the head reads the GRU state, not the embedding space
        super().__init__(**kwargs)
        # The first config made registers the model class with AutoModelForCausalLM (from_pretrained makes the
        # config before it looks the class up); not at import time, as abcgen/_lazy_registration.py explains.
        from abcgen.models.vae import register_auto_classes

        register_auto_classes()


def register_auto_config() -> None:
    """Make ``AutoConfig`` read ``model_type: abcgen_vae`` folders; idempotent."""
    from transformers import AutoConfig

    AutoConfig.register(MODEL_TYPE, MusicVaeConfig, exist_ok=True)


__all__ = ["MODEL_TYPE", "MusicVaeConfig", "register_auto_config"]
