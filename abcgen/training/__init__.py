"""Fine-tuning: typed run configuration, model setup, packed data, loss and atomic checkpoints.

``config`` holds the dataclasses read from ``train/configs/*.yaml`` and the command line (defaults < YAML
< CLI, unknown keys rejected), ``model`` builds the tokenizer and model (LoRA, full or from scratch),
``data`` packs tunes into fixed-length rows, ``attention`` keeps packed tunes apart by the fastest path
each attention implementation has, ``loss`` weighs every real token equally (from logits or hidden
states), ``speed`` compiles and pins, and ``checkpoint`` writes and finds resumable ``accelerate``
states. The loop itself is ``train/finetune.py``.
Nothing is imported here, so reading a config never imports torch.
"""
