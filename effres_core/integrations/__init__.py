"""effres inside other frameworks. Each module imports its framework only when used:
``integrations.diffusers`` (``EffResGuidanceCallback``, extra ``effres[diffusers]``),
``integrations.ray`` (``EffResPredictor`` for Ray Data, extra ``effres[ray]``)."""
