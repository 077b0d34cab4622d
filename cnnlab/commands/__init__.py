"""The logic of the commands that are not a package of their own (``tuning/`` runs studies, ``claims/``
reproductions): each module names its job, and its entry point (``cnnlab/<command>.py``) only launches it.

``runs_table`` (compare), ``rerun`` (verify), ``score_model`` (evaluate), ``predict_images`` (predict),
``register_model`` (register); ``source_protocol`` is what the last three share.
"""
