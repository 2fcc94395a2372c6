"""Model families beside the pretrained-LM path: LSTM, VAE and GAN baselines, judged by the same metrics.

Each lives in its own module; ``train/finetune.py`` trains all of them (``model.method: scratch`` with
``model.architecture: lstm | vae | gan``).
"""
