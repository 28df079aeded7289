import argparse
import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from effres_core.model import hub
from effres_core.cli import score

from conftest import face_like_image


def run_cli(argv) -> int:
    """Parse and run ``effres score ...`` the way ``effres_core.cli.main`` does."""
    parser = argparse.ArgumentParser(prog="effres")
    score.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "faces"
    (root / "nested").mkdir(parents=True)
    Image.fromarray(face_like_image(96, seed=0)).save(root / "a.png")
    Image.fromarray(face_like_image(80, seed=1)).save(root / "nested" / "b.jpg", quality=95)
    Image.fromarray(face_like_image(20, seed=2)).save(root / "tiny.png")  # smaller than a patch
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "notes.txt").write_text("ignored")
    return root


def test_json_end_to_end_with_a_broken_file(folder, tiny_model_dir, tmp_path, capsys):
    heat_dir = tmp_path / "heat"
    code = run_cli(["score", str(folder), "--model", str(tiny_model_dir), "--json", "--detector", "whole",
                    "--masker", "none", "--heatmap", str(heat_dir), "--patches", "16"])
    out, err = capsys.readouterr()
    assert code == 1  # one file failed
    entries = json.loads(out)
    by_name = {e["path"].rsplit("/", 1)[-1]: e for e in entries}
    assert sorted(by_name) == ["a.png", "b.jpg", "broken.jpg", "tiny.png"]
    for e in entries:
        assert {"path", "ratio", "effective_resolution", "faces", "detector", "masker", "error"} <= set(e)
    good = by_name["a.png"]
    assert 0 <= good["ratio"] <= 1 and good["error"] is None
    assert good["effective_resolution"] == [round(good["ratio"] * 96)] * 2
    assert good["faces"][0]["box"] == [0, 0, 96, 96] and good["faces"][0]["patches_used"] > 0
    assert good["detector"] == "whole" and good["masker"] == "none"
    assert by_name["broken.jpg"]["error"] and by_name["broken.jpg"]["ratio"] is None
    assert by_name["tiny.png"]["ratio"] is None and "smaller" in by_name["tiny.png"]["reason"]
    assert by_name["tiny.png"]["error"] is None  # a reason is not a failure
    assert sorted(p.name for p in heat_dir.iterdir()) == ["a_heatmap.png", "b_heatmap.png", "tiny_heatmap.png"]
    assert Image.open(heat_dir / "a_heatmap.png").size == (96, 96)
    assert good["heatmap"] == str(heat_dir / "a_heatmap.png")
    assert "1 of 4 images failed" in err


def test_default_lines_and_exit_code_zero(folder, tiny_model_dir, capsys):
    code = run_cli(["score", str(folder / "a.png"), str(folder / "tiny.png"), "--model", str(tiny_model_dir),
                    "--detector", "whole", "--masker", "none"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(str(folder / "a.png") + ": ratio ") and "of 96x96, 1 face" in lines[0]
    assert lines[1].startswith(str(folder / "tiny.png") + ": not scored: ")
    assert "detector whole, masker none" in err


def test_csv(folder, tiny_model_dir, tmp_path, capsys):
    table = tmp_path / "scores.csv"
    code = run_cli(["score", str(folder), "--model", str(tiny_model_dir), "--csv", str(table),
                    "--detector", "whole", "--masker", "none", "--quiet"])
    assert code == 1
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 4 and set(rows[0]) == set(score.CSV_COLUMNS)
    a = next(r for r in rows if r["path"].endswith("a.png"))
    assert 0 <= float(a["ratio"]) <= 1 and a["height"] == "96" and a["faces"] == "1" and a["error"] == ""
    assert next(r for r in rows if r["path"].endswith("broken.jpg"))["error"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # the lines are still printed


def test_bf16_close_to_float32(folder, tiny_model_dir, capsys):
    base = ["score", str(folder / "a.png"), "--model", str(tiny_model_dir), "--json", "--detector", "whole",
            "--masker", "none"]
    assert run_cli(base) == 0
    (full,) = json.loads(capsys.readouterr().out)
    assert run_cli(base + ["--bf16"]) == 0
    (half,) = json.loads(capsys.readouterr().out)
    assert half["ratio"] == pytest.approx(full["ratio"], abs=0.02)


def test_real_face_with_haar(real_face_path, tiny_model_dir, capsys):
    code = run_cli(["score", str(real_face_path), "--model", str(tiny_model_dir), "--json",
                    "--detector", "haar", "--masker", "ellipse"])
    (entry,) = json.loads(capsys.readouterr().out)
    assert code == 0 and entry["ratio"] is not None and len(entry["faces"]) >= 1


def test_no_default_model_says_so(folder, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("offline")

    import huggingface_hub

    monkeypatch.setattr(hub, "BUNDLED_DEFAULT", tmp_path / "no-default")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    code = run_cli(["score", str(folder / "a.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert "bundled default model is missing" in err and "--model" in err


def test_missing_model_and_no_images(folder, tmp_path, capsys):
    assert run_cli(["score", str(folder / "a.png"), "--model", str(tmp_path / "nope")]) == 2
    assert "cannot find model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli(["score", str(tmp_path / "empty")]) == 1
    assert "no images found" in capsys.readouterr().err


def test_same_stem_in_two_folders_gets_two_heatmaps(tmp_path, tiny_model_dir, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.fromarray(face_like_image(64, seed=3)).save(tmp_path / sub / "face.png")
    heat = tmp_path / "heat"
    assert run_cli(["score", str(tmp_path / "x"), str(tmp_path / "y"), "--model", str(tiny_model_dir),
                    "--detector", "whole", "--masker", "none", "--heatmap", str(heat), "--quiet"]) == 0
    assert sorted(p.name for p in heat.iterdir()) == ["face_2_heatmap.png", "face_heatmap.png"]
    capsys.readouterr()


def test_registered_in_the_cli():
    from effres_core import cli

    assert "score" in cli.SUBCOMMANDS


def test_messages_say_things_once(folder, tiny_model_dir, capsys):
    """Each line names its file once; a reason is not wrapped in a second pair of parentheses;
    --quiet leaves stderr to errors."""
    code = run_cli(["score", str(folder), "--model", str(tiny_model_dir), "--detector", "whole", "--masker", "none",
                    "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    for line in out.strip().splitlines():
        path = line.split(": ", 1)[0]
        assert line.count(path) == 1, line
        assert "((" not in line and "))" not in line, line
    broken = next(line for line in out.splitlines() if "broken.jpg" in line)
    assert broken.startswith(f"{folder / 'broken.jpg'}: error: ") and broken.count("broken.jpg") == 1
    assert "effres: model" not in err and "1 of 4 images failed" in err
    run_cli(["score", str(folder / "a.png"), "--model", str(tiny_model_dir), "--detector", "whole"])
    assert "effres: model" in capsys.readouterr().err  # without --quiet the model line is there


def test_an_animated_gif_scores_its_first_frame(tmp_path, tiny_model_dir, capsys):
    from effres_core.measure.imageio import load_image
    from effres_core.measure.scorer import EffRes

    frames = [Image.fromarray(face_like_image(96, seed=s)) for s in (4, 5)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    code = run_cli(["score", str(tmp_path), "--model", str(tiny_model_dir), "--json", "--detector", "whole",
                    "--masker", "none"])
    (entry,) = json.loads(capsys.readouterr().out)
    assert code == 0 and entry["path"].endswith("anim.gif") and entry["error"] is None
    first = load_image(tmp_path / "anim.gif")
    with Image.open(tmp_path / "anim.gif") as gif:
        assert first.tolist() == __import__("numpy").asarray(gif.convert("RGB")).tolist()  # frame 0
    model = EffRes(hub.load_pretrained(str(tiny_model_dir)), detector="whole", masker="none", device="cpu")
    assert entry["ratio"] == pytest.approx(model.score(first).ratio, abs=1e-6)


def test_quiet_keeps_stderr_for_errors(tmp_path, capsys, monkeypatch):
    """--quiet: no model line and no 'auto chose' lines, but a broken file is still reported."""
    import logging
    import shutil

    from effres_core import cli
    from effres_core.measure import faces

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # let main() configure logging afresh, as in a new process
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(faces, "_logged", set())  # the choice would be logged again
    photo = Path(__file__).resolve().parents[1] / "examples" / "faces" / "photo_sharp.jpg"
    shutil.copy(photo, tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_text("not an image")
    for quiet, expect_chatter in ((["--quiet"], False), ([], True)):
        code = cli.main(["score", str(tmp_path), "--detector", "auto", *quiet])
        out, err = capsys.readouterr()
        assert code == 1 and "good.jpg: ratio" in out
        assert "bad.jpg" in out + err
        assert ("effres: model" in err) is expect_chatter
        assert ("face detector: " in err) is expect_chatter
        faces._logged.clear()
        root.handlers = []
