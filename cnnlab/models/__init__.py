"""Block list -> keras.Model. Shapes are checked in pure Python first (``shapes``), then built (``builder``)."""
