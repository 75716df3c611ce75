"""A native PyTorch implementation of Microsoft's Magma-8B that loads the official checkpoint
layout (config.json, safetensors shards, tokenizer, preprocessor_config.json) without running
downloaded model code.

Parts: ``config`` (config.json), ``convnext`` (the ConvNeXt vision trunk), ``processing``
(Magma's any-resolution crop processing), ``model`` (tower + projector + Llama, KV-cached
steps), ``weights`` (streaming safetensors load with strict key/shape checks), ``adapter``
(the model behind ``hf_adapters.ModelAdapter``), ``loading`` (a checkpoint directory -> adapter).
torch and transformers are imported by these modules, so import them only on the model path.
"""
