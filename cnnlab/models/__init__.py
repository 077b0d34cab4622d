"""Block list -> keras.Model. Shapes are checked in pure Python first (``cnnlab.config.blocks``), then built
(``builder``); ``shapes`` counts a network's training cost from them."""
