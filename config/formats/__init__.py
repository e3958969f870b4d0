"""Date and number formats overriding Django's English ones (``FORMAT_MODULE_PATH``)."""
