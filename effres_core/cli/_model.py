"""Loading the scorer for a subcommand, with the errors a user can act on printed, not raised."""

from __future__ import annotations

import sys


def load_effres(command: str, model_id: str | None, **kwargs):
    """``EffRes.from_pretrained(model_id, **kwargs)`` with its detector and masker resolved up front
    (a missing one fails once, before any image), or ``None`` after printing why it cannot load."""
    from ..model.hub import WeightsNotFoundError
    from ..measure.scorer import EffRes

    try:
        model = EffRes.from_pretrained(model_id, **kwargs)
        model._components()
    except WeightsNotFoundError as err:
        if model_id is None:
            print(f"effres {command}: the bundled default model is missing (effres_core/model/weights/default); "
                  "reinstall effres.\n"
                  "Pass one with --model: a folder with model.safetensors, a .safetensors file, or a Hub repo id.\n"
                  f"({err})", file=sys.stderr)
        else:
            print(f"effres {command}: cannot find model {model_id!r}: {err}", file=sys.stderr)
        return None
    except (OSError, ValueError, RuntimeError) as err:
        print(f"effres {command}: cannot load the scorer: {err}", file=sys.stderr)
        return None
    return model
