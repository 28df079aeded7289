"""effres inside other frameworks. Each module imports its framework only when used:
``integrations.diffusers`` (``EffResGuidanceCallback``, extra ``effres[diffusers]``);
``integrations.ray`` (``EffResPredictor`` for Ray Data, extra ``effres[ray]``);
``integrations.comfy_segs`` (Impact Pack SEGS as plain values: built from face boxes, scored and
split by effective resolution; no ComfyUI or Impact Pack import)."""
