"""``MusicLSTMConfig``: the shape of the LSTM baseline (``abcgen.models.lstm.MusicLSTM``).

A module of its own, apart from the model, because ``AutoConfig`` must know the ``abcgen_lstm`` model type
as soon as transformers' auto-config module is imported (``abcgen._lazy_registration``), and tokenizer-only
code imports that module too: this file needs only ``transformers.configuration_utils`` (already loaded
then), whereas the model module pulls in ``transformers.modeling_utils`` (~2 s). The model module is
imported, and ``MusicLSTM`` registered with ``AutoModelForCausalLM``, when the first config is made.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig

from abcgen.errors import ConfigError

MODEL_TYPE = "abcgen_lstm"


@strict
class MusicLSTMConfig(PreTrainedConfig):
    """Embedding -> ``num_hidden_layers`` stacked LSTM layers -> (projection) -> vocabulary logits.

    ``embedding_size``: width of the token embeddings (and of the output head's rows). ``hidden_size``: units
    of every LSTM layer. When the two differ, a bias-free projection maps the last layer's output
    ``hidden_size -> embedding_size`` before the head, so that the head can share the embedding matrix
    (``tie_word_embeddings``, as in Press & Wolf 2017: the head is most of a small model's parameters
    otherwise). ``dropout`` is applied to the embeddings, between LSTM layers and to the last output, in
    training only. ``initializer_range``: see the field's comment.

    ``layer_types`` tells ``DynamicCache(config=...)`` (which ``generate`` builds) that every layer keeps a
    fixed-size recurrent state rather than growing keys and values; see ``abcgen.models.lstm``.
    """

    model_type = MODEL_TYPE

    vocab_size: int = 1024
    embedding_size: int = 256
    hidden_size: int = 512
    num_hidden_layers: int = 2
    dropout: float = 0.1
    # Std of the embeddings, the projection and an untied head at init. Not transformers' usual 0.02: with
    # the tied head behind a projection, 0.02 leaves the logits and the LSTM's gradients tiny for hundreds
    # of steps. Eval loss after 150 steps of the lstm-cpu.yaml shape: 0.02 -> 3.93, 0.1 -> 3.06,
    # 0.3 -> 2.40, 1.0 -> 2.56 (lr 3e-3).
    initializer_range: float = 0.3
    tie_word_embeddings: bool = True
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs: object) -> None:
        super().__post_init__(**kwargs)
        # The first config made registers the model class with AutoModelForCausalLM (from_pretrained makes
        # the config before it looks the class up). Not at import time: see abcgen/_lazy_registration.py.
        from abcgen.models.lstm import register_auto_classes

        register_auto_classes()

    @property
    def layer_types(self) -> list[str]:
        # "linear_attention" is transformers' cache layer for a fixed-size recurrent state per sequence
        # (Mamba uses it too): DynamicCache builds one LinearAttentionLayer per LSTM layer from this.
        return ["linear_attention"] * self.num_hidden_layers

    def validate_architecture(self) -> None:
        """Part of ``@strict`` validation: every size positive, dropout a probability."""
        problems = [f"{name}={getattr(self, name)} must be >= 1" for name in
                    ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers") if getattr(self, name) < 1]
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} must be in [0, 1)")
        if problems:
            raise ConfigError("MusicLSTMConfig: " + "; ".join(problems))


def register_auto_config() -> None:
    """Make ``AutoConfig`` read ``model_type: abcgen_lstm`` folders; idempotent."""
    from transformers import AutoConfig

    AutoConfig.register(MODEL_TYPE, MusicLSTMConfig, exist_ok=True)


__all__ = ["MODEL_TYPE", "MusicLSTMConfig", "register_auto_config"]
