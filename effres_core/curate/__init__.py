"""Curating image folders by effective resolution: inputs, rules, actions (copy, move, link) and a
resumable manifest. ``effres curate`` is the command; :func:`curate` the same from Python."""

from .actions import ACTIONS, Action
from .inputs import InputFile, collect_inputs
from .manifest import COLUMNS, ManifestWriter, ResumeIndex, read_manifest, write_manifest
from .rules import FACE_RULES, Rules, decide, decision_ratio
from .run import CurateOptions, Summary, batch_score_fn, curate, model_fingerprint, result_row, scorer_settings

__all__ = [
    "ACTIONS", "Action", "COLUMNS", "CurateOptions", "FACE_RULES", "InputFile", "ManifestWriter", "ResumeIndex",
    "Rules", "Summary", "batch_score_fn", "collect_inputs", "curate", "decide", "decision_ratio", "model_fingerprint",
    "read_manifest", "result_row", "scorer_settings", "write_manifest",
]
