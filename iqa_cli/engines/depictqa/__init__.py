"""The DepictQA-Wild engine: a vision-language model that describes image quality in words."""
