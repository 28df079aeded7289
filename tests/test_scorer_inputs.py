"""EffRes.score reads every kind of image value by one rule (integers 0..255, floats [0, 1]) and
refuses anything else the same way in every call form: single image, list, batch tensor."""

import numpy as np
import pytest
import torch

from effres_core.measure.imageio import FLOAT_TOLERANCE, check_image_values, tensor_to_rgb_list
from effres_core.measure.scorer import EffRes

from conftest import face_like_image, make_tiny_net


@pytest.fixture(scope="module")
def model():
    return EffRes(make_tiny_net(), detector="whole", masker="none", device="cpu")


@pytest.fixture(scope="module")
def face():
    return face_like_image()


def _accepted(face):
    """Every accepted spelling of one image, each meaning exactly ``face``."""
    t = torch.from_numpy(face)
    unit = t.float() / 255
    return {
        "uint8 array": face,
        "int64 array": face.astype(np.int64),
        "uint16 array holding 0..255": face.astype(np.uint16),
        "float32 array in [0, 1]": face.astype(np.float32) / 255,
        "float64 array in [0, 1]": face / 255.0,
        "float tensor [3, H, W]": unit.permute(2, 0, 1),
        "float tensor [1, 3, H, W]": unit.permute(2, 0, 1)[None],
        "ComfyUI float tensor [1, H, W, 3]": unit[None],
        "uint8 tensor [1, 3, H, W]": t.permute(2, 0, 1)[None],
        "int64 tensor [1, H, W, 3]": t.long()[None],
        "float16 tensor": unit.half().permute(2, 0, 1)[None],
        "float with rounding overshoot": (unit * (1 + FLOAT_TOLERANCE / 2) - FLOAT_TOLERANCE / 4).permute(2, 0, 1),
    }


def test_every_accepted_kind_reads_the_same_pixels(face):
    for kind, x in _accepted(face).items():
        rgb = tensor_to_rgb_list(x)[0] if torch.is_tensor(x) else None
        if rgb is None:
            from effres_core.measure.imageio import array_to_rgb
            rgb = array_to_rgb(x)
        tolerance = 1 if ("float16" in kind or "overshoot" in kind) else 0
        assert np.abs(rgb.astype(int) - face).max() <= tolerance, kind


def test_every_accepted_kind_gives_the_same_score_in_every_call_form(model, face):
    reference = model.score(face).ratio
    assert reference is not None
    for kind, x in _accepted(face).items():
        single = model.score(x)
        results = single if isinstance(single, list) else [single]  # a [1, ...] tensor is a batch of one
        results += model.score([x])
        assert all(r.error is None for r in results), (kind, [r.error for r in results])
        assert all(r.ratio == pytest.approx(reference, abs=0.02) for r in results), kind
    batch = torch.from_numpy(face).long()[None].repeat(3, 1, 1, 1)  # int64 ComfyUI-style batch
    assert [r.ratio for r in model.score(batch)] == pytest.approx([reference] * 3, abs=1e-6)


def _refused(face):
    """Inputs that must be refused, and the words the error must hold."""
    unit = torch.from_numpy(face).float().permute(2, 0, 1)[None] / 255
    nan = unit.clone()
    nan[..., 5, 5] = float("nan")
    return {
        "float tensor holding 0..255": (unit * 255, r"\[0, 1\], got values in \[10, 242\].*divide by 255"),
        "float array holding 0..255": (face.astype(np.float32), r"\[0, 1\], got values in \[10, 242\]"),
        "[-1, 1] tensor": (unit * 2 - 1, r"\[0, 1\], got values in \[-\d.*\(x \+ 1\) / 2"),
        "bool tensor": (unit > 0.5, "boolean"),
        "bool array": (face > 128, "boolean"),
        "NaN tensor": (nan, "NaN"),
        "inf array": (np.full(face.shape, np.inf, np.float32), "NaN or infinite"),
        "16-bit integers": (face.astype(np.uint16) * 257, r"0\.\.255, got values in 2570\.\.62194.*16-bit"),
        "negative integers": (torch.from_numpy(face).long()[None] - 300, r"0\.\.255, got values in -290\.\.-58"),
    }


@pytest.mark.parametrize("kind", list(_refused(face_like_image())))
def test_refused_values_give_an_error_entry_in_every_call_form(model, face, kind):
    x, words = _refused(face)[kind]
    assert face.min() == 10 and face.max() == 242  # the ranges the messages must name
    single = model.score(x)
    forms = {"single": single if not isinstance(single, list) else single[0],
             "list": model.score([face, x])[1]}
    if torch.is_tensor(x):
        forms["batch"] = model.score(torch.cat([x, x]))[1]
    for form, result in forms.items():
        assert result.ratio is None and result.effective_resolution is None, (kind, form)
        assert result.error is not None, (kind, form)
        assert __import__("re").search(words, result.error), (kind, form, result.error)
    with pytest.raises(ValueError):
        check_image_values(x)


def test_a_bad_image_in_a_batch_only_marks_itself(model, face):
    good = torch.from_numpy(face).float().permute(2, 0, 1) / 255
    batch = torch.stack([good, good * 255, good])
    results = model.score(batch)
    assert [r.error is None for r in results] == [True, False, True]
    assert results[0].ratio == results[2].ratio == pytest.approx(model.score(face).ratio, abs=1e-6)


def test_a_batch_inside_a_list_gives_one_result_per_image(model, face):
    batch = torch.from_numpy(face).float().permute(2, 0, 1)[None].repeat(2, 1, 1, 1) / 255
    assert len(model.score([face, batch])) == 3
    arrays = model.score(np.stack([face, face]))  # a [B, H, W, 3] array is a batch too
    assert len(arrays) == 2 and arrays[0].ratio == pytest.approx(model.score(face).ratio, abs=1e-6)


def test_empty_and_tolerance_edges():
    check_image_values(np.zeros((0, 0, 3), np.float32))  # shape problems are reported elsewhere
    check_image_values(np.full((2, 2, 3), 1 + FLOAT_TOLERANCE, np.float64))
    with pytest.raises(ValueError, match="float image values"):
        check_image_values(np.full((2, 2, 3), 1 + 2 * FLOAT_TOLERANCE, np.float64))
    check_image_values(torch.full((2, 2, 3), 1.0, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="unsupported image dtype"):
        check_image_values(np.zeros((2, 2, 3), np.complex64))
