"""The one finetune engine below the model contract: ``train`` (the Trainer and
``finetune``), ``parts`` (optimiser, schedule, EMA, autocast, run folders), ``checkpoint``
(atomic, resumable), ``lora`` and ``lora_base`` (peft adapters and the base they need).
The contract never imports this package; it imports the contract."""
