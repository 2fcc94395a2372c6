"""``MusicLSTM``: an embedding -> stacked LSTM -> projection language model, as a transformers model.

The recurrent baseline of the model families. It is an ordinary ``PreTrainedModel`` + ``GenerationMixin``
with its own config (``abcgen_lstm``, registered with ``AutoConfig``/``AutoModelForCausalLM`` by
``import abcgen``), so ``generate``, the ``abc-generation`` pipeline, constrained decoding,
``save_pretrained``/``from_pretrained`` (safetensors), ``resize_token_embeddings`` and the training loop
all work on it unchanged. Shapes: ``B`` rows, ``T`` positions, ``E`` = ``embedding_size``, ``H`` =
``hidden_size``, ``V`` = ``vocab_size``.

**Packed rows without cross-talk.** ``train/finetune.py`` packs several tunes into one row, with
``position_ids`` that restart at 0 for every tune (``abcgen.training.data``). A recurrent state would
carry one tune into the next, so the state is reset wherever a sequence starts: where ``position_ids``
is 0 or, without position ids, where a 2-D ``attention_mask`` turns from 0 to 1 (left padding), or where
a 4-D additive/boolean block mask forbids a token to see its predecessor. Each row runs through the LSTM
as it is (exact for its first sequence), and every sequence that starts inside a row runs again from a
zero state in a lane of its own; its positions are then taken from that lane (``_Lanes``). A tune
therefore gives the same logits alone and packed after another tune (``tests/test_lstm.py``). Rows without
an inner start (generation, unpacked batches) need no extra lane.

**Generation with an O(1) state.** The cache is transformers' own ``DynamicCache(config=...)``, which
``generate`` builds: ``MusicLSTMConfig.layer_types`` makes it one ``LinearAttentionLayer`` per LSTM layer,
the cache layer transformers uses for fixed-size recurrent states (Mamba's). Each holds that layer's
``(h, c)`` stacked as one ``(B, 2, H)`` recurrent state, batch first so that its ``reorder_cache`` (beam
search) selects rows correctly. ``generate`` then feeds only the newest token with its position id (never
0 after the prompt), and the state continues: every decoding step costs the same, whatever the length.
A forward call continues the cached state of a row unless that row's first position id is 0 (a new
sequence). ``_is_stateful`` tells ``generate`` that the state cannot be rolled back (no assisted decoding).

**Training-loop contract.** ``model(**forward_kwargs(batch)).logits`` (``use_cache=False``), and for a loss
that never builds the logits, ``model.get_decoder()(...).last_hidden_state`` (``(B, T, E)``, the head's
input) with ``model.get_output_embeddings()`` (the head). Gradient checkpointing is refused
(``supports_gradient_checkpointing = False``): the LSTM's activations are its gate values, small next to a
transformer's, and recomputing a whole recurrence in the backward pass would double its sequential cost.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep

from abcgen.errors import ConfigError
from abcgen.models.lstm_config import MODEL_TYPE, MusicLSTMConfig, register_auto_config

# nn.LSTM packs its four gates as (input, forget, cell, output) blocks of H rows each.
_FORGET_GATE = 1


class MusicLSTMPreTrainedModel(PreTrainedModel):
    """Config class, weight initialisation and capabilities shared by the backbone and the LM."""

    config_class = MusicLSTMConfig
    config: MusicLSTMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _is_stateful = True  # generate: no assisted decoding (a recurrent state cannot be cropped back)
    _no_split_modules = ["MusicLSTMModel"]

    def _init_weights(self, module: nn.Module) -> None:
        # transformers' defaults (normal embeddings and linears, Xavier LSTM weights, zero biases), then the
        # forget-gate bias at 1 (Jozefowicz et al. 2015): the cell keeps its memory at the start of training
        # instead of forgetting half of it every step. Parameters loaded from a checkpoint are flagged
        # ``_is_hf_initialized`` and left alone.
        super()._init_weights(module)
        if isinstance(module, nn.LSTM):
            size = module.hidden_size
            for name, param in module.named_parameters():
                if name.startswith("bias_ih") and not getattr(param, "_is_hf_initialized", False):
                    with torch.no_grad():
                        param[_FORGET_GATE * size:(_FORGET_GATE + 1) * size].fill_(1.0)


def _sequence_starts(batch: int, length: int, device: torch.device, attention_mask: torch.Tensor | None,
                     position_ids: torch.Tensor | None) -> torch.Tensor:
    """``(B, T)`` bool: True where a new sequence starts, i.e. the state must be reset before the token.

    Position ids win (0 = a sequence starts; ``generate`` and the packed collator give them). Otherwise a
    2-D mask ``(B, past + T)`` gives the positions ``generate`` would derive from it (left padding: the first
    real token is at 0, every pad token too), and a 4-D mask ``(B, 1, T, past + T)`` (additive float: 0 =
    attend, negative = blocked; or boolean: True = attend) starts a sequence wherever a token may not attend
    to the one before it.
    """
    if position_ids is not None:
        return (position_ids == 0).expand(batch, length)
    if attention_mask is None:
        return torch.zeros(batch, length, dtype=torch.bool, device=device)
    if attention_mask.dim() == 2:
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        return positions[:, -length:] == 0
    if attention_mask.dim() == 4:
        past = attention_mask.shape[-1] - length
        queries = torch.arange(length, device=device)
        previous = (queries + past - 1).clamp(min=0)  # query t is key past + t; its predecessor is key past + t - 1
        to_previous = attention_mask[:, 0, queries, previous]  # (B, T): may t see the token before it?
        blocked = ~to_previous if to_previous.dtype == torch.bool else to_previous < 0
        if past == 0:
            blocked[:, 0] = True  # nothing comes before the first token
        return blocked
    raise ConfigError(f"attention_mask of shape {tuple(attention_mask.shape)} cannot be read: give a 2-D padding "
                      "mask (B, T), a 4-D block mask (B, 1, T, T), or position_ids that restart at 0 per sequence")


class _Lanes:
    """How a ``(B, T)`` batch whose rows hold several sequences runs through ``nn.LSTM`` without cross-talk.

    A *lane* is one independent run of the LSTM. Every row is a lane: exact for the row's first sequence
    (which may continue the cached state), meaningless after the row's first inner start, where nothing is
    read from it. Each *later* sequence (one that starts inside a row) is read from a lane of its own that
    starts from a zero state, gathered from the row's tokens; lanes of one group run as one ``(n, L, D)``
    batch. With ``exact_final_states`` a group holds the later sequences of one length, so every lane ends
    where its sequence ends and its final state is the one a cache must keep; without it (training), all
    later sequences form one group padded to the longest: fewer LSTM calls, and as the padding comes after
    each sequence, a causal LSTM's outputs at its real positions are unchanged.

    Why not one ``PackedSequence`` of all sequences: PyTorch's CPU LSTM runs packed input ~4x slower than a
    padded batch (measured on the lstm-cpu.yaml shape), and in rows of whole tunes most tokens belong to a
    row's first sequence, which the row lanes run at no extra cost.
    """

    def __init__(self, starts: torch.Tensor, exact_final_states: bool) -> None:
        batch, length = starts.shape
        self.batch, self.length = batch, length
        flat_starts = starts.clone()
        flat_starts[:, 0] = True
        flat_starts = flat_starts.reshape(-1)  # (B*T,)
        start_index = flat_starts.nonzero().squeeze(1)  # (S,) flat index of each sequence's first token
        lengths = torch.diff(start_index, append=start_index.new_tensor([batch * length]))  # (S,)
        last_of_row = (flat_starts.long().cumsum(0) - 1).view(batch, length)[:, -1]  # (B,) sequence ending each row
        later = (start_index % length != 0).nonzero().squeeze(1)  # (S',) sequences that start inside a row
        if exact_final_states:
            groups = [later[lengths[later] == size] for size in lengths[later].unique().tolist()]
        else:
            groups = [later]
        self.token_index: list[torch.Tensor] = []  # per group (n, L): flat index of each lane step's token
        self.valid: list[torch.Tensor] = []  # per group (n, L): the step is inside the lane's sequence
        self.row_ends: list[tuple[torch.Tensor, torch.Tensor]] = []  # per group: (rows, lanes) ending a row
        for members in groups:
            steps = torch.arange(int(lengths[members].max()), device=starts.device)
            index = start_index[members].unsqueeze(1) + steps  # (n, L)
            self.valid.append(steps < lengths[members].unsqueeze(1))
            self.token_index.append(index.clamp(max=batch * length - 1))  # steps past the end: any token
            rows = torch.div(start_index[members], length, rounding_mode="floor")
            ends = (last_of_row[rows] == members).nonzero().squeeze(1)
            self.row_ends.append((rows[ends], ends))

    def gather(self, values: torch.Tensor) -> list[torch.Tensor]:
        """``(B, T, D)`` -> the later sequences' lanes, one ``(n, L, D)`` tensor per group."""
        flat = values.reshape(self.batch * self.length, -1)
        return [flat[index] for index in self.token_index]

    def merge(self, rows: torch.Tensor, lanes: list[torch.Tensor]) -> torch.Tensor:
        """The row lanes' outputs ``(B, T, D)`` with every later sequence's positions taken from its lane."""
        flat = rows.reshape(self.batch * self.length, -1)
        positions = torch.cat([index[valid] for index, valid in zip(self.token_index, self.valid, strict=True)])
        values = torch.cat([lane[valid] for lane, valid in zip(lanes, self.valid, strict=True)])
        return flat.index_put((positions,), values).view(self.batch, self.length, -1)

    def final_states(self, rows: torch.Tensor, lanes: list[torch.Tensor]) -> torch.Tensor:
        """Each row's state after its last token ``(B, H)``: its row lane's, or the lane of the later sequence
        that ends the row (exact only with ``exact_final_states``)."""
        for (row_index, lane_index), lane in zip(self.row_ends, lanes, strict=True):
            rows = rows.index_put((row_index,), lane[lane_index])
        return rows


def _cached_state(cache: Cache | None, layer_idx: int) -> torch.Tensor | None:
    """Layer ``layer_idx``'s ``(B, 2, H)`` state (h, c) in ``cache``, or None before its first update.

    Read from the layer itself: ``Cache.get_recurrent_state`` answers None unless a *conv* state was also
    written (its ``has_previous_state`` flag is only set by ``update_conv_state``), and an LSTM has none. A
    state zeroed by ``cache.reset()`` is the LSTM's initial state, so it needs no special case.
    """
    if cache is None or layer_idx >= len(cache.layers):
        return None
    layer = cache.layers[layer_idx]
    if not getattr(layer, "is_recurrent_states_initialized", {}).get(0, False):
        return None
    return layer.recurrent_states[0]


class MusicLSTMModel(MusicLSTMPreTrainedModel):
    """The backbone (the "decoder"): token ids -> ``last_hidden_state`` ``(B, T, E)``, the head's input."""

    def __init__(self, config: MusicLSTMConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, config.pad_token_id)
        # One nn.LSTM per layer (not one multi-layer nn.LSTM): each layer's state is one cache layer, and
        # its output can be returned as a hidden state.
        self.layers = nn.ModuleList(
            nn.LSTM(config.embedding_size if i == 0 else config.hidden_size, config.hidden_size, batch_first=True)
            for i in range(config.num_hidden_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.projection = (nn.Linear(config.hidden_size, config.embedding_size, bias=False)
                           if config.hidden_size != config.embedding_size else None)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> BaseModelOutputWithPast | tuple:
        """``input_ids`` ``(B, T)`` (or ``inputs_embeds`` ``(B, T, E)``) -> ``last_hidden_state`` ``(B, T, E)``.

        ``attention_mask``/``position_ids`` only mark where sequences start (see ``_sequence_starts``); an
        LSTM attends to nothing. ``use_cache`` (default: ``config.use_cache`` in eval mode, False in
        training) returns the state in ``cache`` (a ``DynamicCache`` is made when none is given).
        ``output_hidden_states``: the embeddings and every LSTM layer's output, ``(B, T, E)`` then
        ``(B, T, H)`` each. Other keyword arguments from ``generate`` (``output_attentions``, ...) do not
        apply to an LSTM and are ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ConfigError("give exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        batch, length, _ = inputs_embeds.shape
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and not self.training)
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if cache is not None and (len(cache.layers) != len(self.layers) or not all(cache.is_linear)):
            raise ConfigError(f"cache {type(cache).__name__} with layers {cache.layers} cannot hold LSTM states: pass "
                              "cache=None (one is made) or DynamicCache(config=model.config)")

        starts = _sequence_starts(batch, length, inputs_embeds.device, attention_mask, position_ids)
        continues = ~starts[:, 0]  # rows that continue the cached state (not a new sequence at their start)
        lanes = _Lanes(starts, exact_final_states=use_cache) if bool(starts[:, 1:].any()) else None
        hidden = self.dropout(inputs_embeds)
        later = lanes.gather(hidden) if lanes is not None else []
        states = []
        layer_outputs: list[torch.Tensor] = [inputs_embeds] if output_hidden_states else []
        for layer_idx, layer in enumerate(self.layers):
            h0, c0 = self._initial_state(cache, layer_idx, continues, batch, inputs_embeds)
            hidden, (h_n, c_n) = layer(hidden, (h0.unsqueeze(0), c0.unsqueeze(0)))
            later_runs = [layer(lane) for lane in later]  # later sequences start from a zero state
            later = [out for out, _ in later_runs]
            if use_cache:
                h_n, c_n = h_n.squeeze(0), c_n.squeeze(0)  # (B, H)
                if lanes is not None:
                    h_n = lanes.final_states(h_n, [h.squeeze(0) for _, (h, _) in later_runs])
                    c_n = lanes.final_states(c_n, [c.squeeze(0) for _, (_, c) in later_runs])
                states.append(torch.stack([h_n, c_n], dim=1))  # (B, 2, H)
            if output_hidden_states:
                layer_outputs.append(lanes.merge(hidden, later) if lanes is not None else hidden)
            if layer_idx < len(self.layers) - 1:
                hidden = self.dropout(hidden)
                later = [self.dropout(lane) for lane in later]
        output = lanes.merge(hidden, later) if lanes is not None else hidden
        output = self.dropout(output)
        if self.projection is not None:
            output = self.projection(output)
        if use_cache:
            for layer_idx, state in enumerate(states):
                cache.update_recurrent_state(state, layer_idx=layer_idx)
        hidden_states = tuple(layer_outputs) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (output, cache if use_cache else None, hidden_states) if v is not None)
        return BaseModelOutputWithPast(last_hidden_state=output, cache=cache if use_cache else None,
                                       hidden_states=hidden_states)

    def _initial_state(self, cache: Cache | None, layer_idx: int, continues: torch.Tensor, batch: int,
                       like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h0, c0)``, each ``(B, H)``: the cached state for rows that continue, zeros otherwise."""
        zeros = like.new_zeros(batch, self.config.hidden_size)
        state = _cached_state(cache, layer_idx)
        if state is None:
            return zeros, zeros
        if state.shape[0] != batch:
            raise ConfigError(f"the cache holds states of {state.shape[0]} rows but the batch has {batch}: pass "
                              "cache=None to start new sequences, or the same rows as before")
        keep = continues.unsqueeze(1)
        return torch.where(keep, state[:, 0], zeros), torch.where(keep, state[:, 1], zeros)


class MusicLSTM(MusicLSTMPreTrainedModel, GenerationMixin):
    """The LSTM language model: ``MusicLSTMModel`` + an output head ``E -> V`` (tied to the embeddings
    when ``config.tie_word_embeddings``)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MusicLSTMConfig) -> None:
        super().__init__(config)
        self.model = MusicLSTMModel(config)
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.loss_type = "ForCausalLM"  # transformers guesses it from the class name otherwise, and warns
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: object,
    ) -> CausalLMOutputWithPast | tuple:
        """Logits ``(B, T, V)`` (the last ``logits_to_keep`` positions only, when > 0: ``generate`` asks for 1).

        ``labels`` ``(B, T)`` (unshifted, -100 = no loss) add transformers' mean causal-LM loss (other keyword
        arguments, e.g. the Trainer's ``num_items_in_batch``, go to it); the training loop computes its own
        token-sum loss from the logits instead. See ``MusicLSTMModel.forward`` for the other arguments.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=cache, inputs_embeds=inputs_embeds, use_cache=use_cache,
                             output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        if not return_dict:
            rest = tuple(v for v in (outputs.cache, outputs.hidden_states) if v is not None)
            return ((loss,) if loss is not None else ()) + (logits,) + rest
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=outputs.cache,
                                      hidden_states=outputs.hidden_states)


def register_auto_classes() -> None:
    """Register ``MusicLSTM`` with ``AutoModelForCausalLM`` (its config with ``AutoConfig`` too, if that has
    not happened yet); idempotent. ``import abcgen`` arranges for this to run (``abcgen._lazy_registration``)."""
    from transformers import AutoModelForCausalLM

    register_auto_config()
    AutoModelForCausalLM.register(MusicLSTMConfig, MusicLSTM, exist_ok=True)


__all__ = ["MODEL_TYPE", "MusicLSTM", "MusicLSTMConfig", "MusicLSTMModel", "register_auto_classes"]
