"""LoRA fine-tuning of the native Magma on frames read from ROS 2 bags (``magma-ros finetune``).

``settings`` (the options), ``dataset`` (frames from bags as ``magma-ros eval`` reads them, split by
episode), ``examples`` (the inference input of a frame + its encoded action as a training example),
``lora`` (peft on the language model), ``trainer`` (the loop, schedule, checkpoints, validation),
``outputs`` (metrics, plot, the merged checkpoint). torch and peft are imported lazily.
"""
