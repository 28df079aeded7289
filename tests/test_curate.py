"""effres curate end to end: inputs, rules, actions, the manifest and resume (tiny model, real faces for Haar)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_net
from effres_core.curate import (Action, CurateOptions, Rules, batch_score_fn, collect_inputs, curate, decide,
                                decision_ratio, read_manifest)
from effres_core.curate.actions import apply
from effres_core.curate.manifest import ManifestWriter, ResumeIndex
from effres_core.measure.batch import BatchScorer
from effres_core.measure.scorer import EffRes

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faces"


@pytest.fixture(scope="module")
def model():
    return EffRes(make_tiny_net(), device="cpu", detector="haar", masker="ellipse")


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path]:
    """``root``: nested folders, a two-face image, a truncated JPEG, a text file named .png;
    ``other``: a different image with the same relative path as one in ``root`` (a name clash)."""
    root, other = tmp_path / "root", tmp_path / "other"
    (root / "sub" / "deeper").mkdir(parents=True)
    other.mkdir()
    shutil.copy(EXAMPLES / "photo_sharp.jpg", root / "photo_sharp.jpg")
    shutil.copy(EXAMPLES / "portrait_sharp.jpg", root / "sub" / "deeper" / "portrait_sharp.jpg")
    shutil.copy(EXAMPLES / "portrait_4x_upscaled.jpg", root / "sub" / "portrait_4x_upscaled.jpg")
    a = np.asarray(Image.open(EXAMPLES / "photo_sharp.jpg").convert("RGB"))
    b = np.asarray(Image.open(EXAMPLES / "portrait_sharp.jpg").convert("RGB").resize((512, 512)))
    Image.fromarray(np.concatenate([a, b], axis=1)).save(root / "group.jpg", quality=95)
    (root / "broken.jpg").write_bytes((EXAMPLES / "photo_sharp.jpg").read_bytes()[:4000])
    (root / "notes.png").write_text("not an image")
    shutil.copy(EXAMPLES / "photo_2x_upscaled.jpg", other / "photo_sharp.jpg")
    return root, other


def snapshot(*folders: Path) -> dict:
    out = {}
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for f in files:
                p = Path(dirpath, f)
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns, p.read_bytes() if not p.is_symlink() else os.readlink(p))
    return out


def run(model, inputs, **options):
    scorer = BatchScorer(model, workers=2, accelerate=False, keep_maps=False)
    return curate(inputs, batch_score_fn(scorer, "tiny@0", "s"), CurateOptions(progress=False, **options),
                  "tiny@0", "s", log=lambda s: None)


def test_end_to_end_copies_keep_structure_report_clashes_and_never_touch_sources(model, dataset, tmp_path):
    root, other = dataset
    before = snapshot(root, other)
    inputs = collect_inputs([str(root), str(other)])
    assert len(inputs) == 7
    manifest = tmp_path / "m.jsonl"
    summary = run(model, inputs, kept=Action("copy", str(tmp_path / "kept")), manifest=str(manifest))
    assert snapshot(root, other) == before  # copies never change or remove a source
    rows = {Path(r["path"]).relative_to(tmp_path).as_posix(): r for r in read_manifest(manifest)}
    assert len(rows) == 7
    assert summary.failed == 2 and summary.kept == 5 and summary.clashes == 1
    assert "cannot decode" in rows["root/broken.jpg"]["error"] or "truncated" in rows["root/broken.jpg"]["error"]
    assert "not an image" in rows["root/notes.png"]["error"]
    assert rows["root/group.jpg"]["n_faces"] == 2 and len(rows["root/group.jpg"]["faces"]) == 2
    deep = tmp_path / "kept" / "sub" / "deeper" / "portrait_sharp.jpg"
    assert deep.read_bytes() == (root / "sub" / "deeper" / "portrait_sharp.jpg").read_bytes()
    # Both photo_sharp.jpg map to kept/photo_sharp.jpg: the first is copied, the second reported.
    assert (tmp_path / "kept" / "photo_sharp.jpg").read_bytes() == (root / "photo_sharp.jpg").read_bytes()
    assert rows["other/photo_sharp.jpg"]["action_status"].startswith("clash")
    for r in rows.values():
        assert r["size"] == Path(r["path"]).stat().st_size and r["model"] == "tiny@0"
        if not r["error"]:
            assert len(r["sha256"]) == 64 and r["ratio"] is not None


def test_dry_run_changes_nothing(model, dataset, tmp_path):
    root, other = dataset
    before = snapshot(root, other)
    cwd_before = set(os.listdir(tmp_path))
    summary = run(model, collect_inputs([str(root), str(other)]), kept=Action("move", str(tmp_path / "kept")),
                  rejected=Action("symlink", str(tmp_path / "soft")), rules=Rules(min_ratio=0.5), dry_run=True,
                  manifest=None)
    assert snapshot(root, other) == before
    assert set(os.listdir(tmp_path)) == cwd_before  # no destination folder, no manifest
    assert summary.kept + summary.rejected == 5


def test_resume_after_a_kill_scores_only_the_rest(model, dataset, tmp_path):
    root, _ = dataset
    inputs = collect_inputs([str(root)])
    manifest = tmp_path / "m.jsonl"
    scorer = BatchScorer(model, workers=2, accelerate=False, keep_maps=False)
    plain = batch_score_fn(scorer, "tiny@0", "s")

    def killed_after_three(todo):
        for k, row in enumerate(plain(todo)):
            if k == 3:
                raise KeyboardInterrupt
            yield row

    opts = dict(manifest=str(manifest), progress=False)
    first = curate(inputs, killed_after_three, CurateOptions(**opts), "tiny@0", "s")
    assert first.interrupted and first.scored == 3
    assert len(read_manifest(manifest)) == 3
    with open(manifest, "a") as f:
        f.write('{"path": "/half/written", "si')  # the kill cut a line short
    scored = []

    def counting(todo):
        scored.extend(t.path for t in todo)
        yield from plain(todo)

    second = curate(inputs, counting, CurateOptions(resume=str(manifest), **opts), "tiny@0", "s")
    assert not second.interrupted and second.reused == 3 and len(scored) == len(inputs) - 3
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]  # every line whole again
    assert sorted(r["path"] for r in rows) == sorted(i.path for i in inputs)
    # A changed file is scored again; another model or setting re-scores everything.
    os.utime(inputs[0].path, ns=(0, 10**18))
    scored.clear()
    curate(inputs, counting, CurateOptions(resume=str(manifest), **opts), "tiny@0", "s")
    assert scored == [inputs[0].path]
    scored.clear()
    curate(inputs, counting, CurateOptions(resume=str(manifest), **opts), "tiny@1", "s")
    assert len(scored) == len(inputs)


def test_move_after_recording_and_never_over_an_existing_file(model, dataset, tmp_path):
    root, _ = dataset
    dest = tmp_path / "kept"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "portrait_4x_upscaled.jpg").write_bytes(b"someone else's file")
    inputs = collect_inputs([str(root)])
    summary = run(model, inputs, kept=Action("move", str(dest)), manifest=str(tmp_path / "m.csv"))
    assert (dest / "sub" / "portrait_4x_upscaled.jpg").read_bytes() == b"someone else's file"
    assert (root / "sub" / "portrait_4x_upscaled.jpg").exists()  # clash: the source stays
    assert not (root / "photo_sharp.jpg").exists() and (dest / "photo_sharp.jpg").exists()
    assert (dest / "sub" / "deeper" / "portrait_sharp.jpg").exists()
    assert summary.clashes == 1
    rows = {r["rel"]: r for r in read_manifest(tmp_path / "m.csv")}
    assert rows["photo_sharp.jpg"]["action_status"] == "done" and rows["photo_sharp.jpg"]["ratio"] is not None


def test_rejected_files_are_linked(model, dataset, tmp_path):
    root, _ = dataset
    run(model, collect_inputs([str(root)]), rules=Rules(min_ratio=1.0),
        rejected=Action("symlink", str(tmp_path / "soft")), manifest=None)
    link = tmp_path / "soft" / "sub" / "deeper" / "portrait_sharp.jpg"
    assert link.is_symlink() and os.path.samefile(link, root / "sub" / "deeper" / "portrait_sharp.jpg")
    assert not (tmp_path / "soft" / "broken.jpg").exists()  # failed files are neither kept nor rejected


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_manifest_loads_with_pandas_and_pyarrow(model, dataset, tmp_path, fmt):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    root, _ = dataset
    path = tmp_path / f"m.{fmt}"
    run(model, collect_inputs([str(root)]), manifest=str(path))
    if fmt == "jsonl":
        df = pd.read_json(path, lines=True)
    elif fmt == "csv":
        df = pd.read_csv(path)
    else:
        import pyarrow.parquet as pq

        df = pq.read_table(path).to_pandas()
        assert not Path(str(path) + ".partial.jsonl").exists()
    assert len(df) == 6 and {"path", "size", "mtime", "sha256", "ratio", "decision", "error"} <= set(df.columns)
    assert set(df["decision"]) == {"kept", "failed"}
    assert read_manifest(path)[0]["faces"] == json.loads(df.iloc[0]["faces"]) if fmt != "jsonl" else True


def test_face_rules():
    row = {"ratio": 0.5, "height": 1000, "faces": [
        {"box": [0, 0, 100, 100], "ratio": 0.9}, {"box": [0, 0, 400, 400], "ratio": 0.4},
        {"box": [0, 0, 50, 50], "ratio": None}]}
    assert decision_ratio(row, "largest") == 0.4
    assert decision_ratio(row, "all") == 0.4 and decision_ratio(row, "any") == 0.9
    assert decision_ratio(row, "image") == 0.5
    assert decision_ratio({"faces": []}, "largest") is None
    rows = [dict(row), {"ratio": 0.8, "height": 100, "faces": [{"box": [0, 0, 9, 9], "ratio": 0.8}]},
            {"error": "broken", "faces": []}, {"ratio": None, "reason": "no face found", "faces": []}]
    decide(rows, Rules(min_ratio=0.5, faces="any"))
    assert [r["decision"] for r in rows] == ["kept", "kept", "failed", "rejected"]
    assert rows[3]["decision_reason"] == "no face found"
    decide(rows, Rules(min_ratio=0.5, faces="any", min_effective_pixels=200))
    assert [r["decision"] for r in rows] == ["kept", "rejected", "failed", "rejected"]
    assert "effective height 80 px" in rows[1]["decision_reason"]
    decide(rows, Rules(top_n=1, faces="any"))
    assert [r["decision"] for r in rows] == ["kept", "rejected", "failed", "rejected"]
    with pytest.raises(ValueError, match="faces"):
        Rules(faces="biggest")


def test_actions_are_idempotent_and_never_overwrite(tmp_path):
    src = tmp_path / "a.jpg"
    src.write_bytes(b"abc")
    import hashlib

    sha = hashlib.sha256(b"abc").hexdigest()
    copy = Action("copy", str(tmp_path / "out"))
    assert apply(copy, str(src), "x/a.jpg", sha)[1] == "done"
    assert apply(copy, str(src), "x/a.jpg", sha)[1] == "exists"  # a resumed run
    (tmp_path / "other.jpg").write_bytes(b"xyz")
    assert apply(copy, str(tmp_path / "other.jpg"), "x/a.jpg", hashlib.sha256(b"xyz").hexdigest())[1].startswith("clash")
    assert (tmp_path / "out" / "x" / "a.jpg").read_bytes() == b"abc"
    assert apply(Action("hardlink", str(tmp_path / "hl")), str(src), "a.jpg", sha)[1] == "done"
    assert os.path.samefile(tmp_path / "hl" / "a.jpg", src)
    with pytest.raises(ValueError):
        Action("delete", "x")


def test_inputs_globs_lists_and_dedup(dataset, tmp_path):
    root, other = dataset
    listed = tmp_path / "list.csv"
    listed.write_text(f"path,label\n{root / 'photo_sharp.jpg'},1\n{other / 'photo_sharp.jpg'},0\n")
    found = collect_inputs([str(root / "**" / "*.jpg"), str(root / "photo_sharp.jpg")], [str(listed)])
    rels = [f.rel for f in found]
    assert "sub/deeper/portrait_sharp.jpg" in rels  # under the glob's fixed prefix
    assert rels.count("photo_sharp.jpg") == 1  # root's, once though named three times
    assert rels[-1] == "other/photo_sharp.jpg"  # a list keeps paths under its common folder
    assert len({f.path for f in found}) == len(found) == 6


def test_100k_row_index_resumes_by_stat_not_hash(tmp_path):
    rows = [{"path": f"/data/{i}.jpg", "size": i, "mtime": 1.5, "model": "m", "settings": "s"} for i in range(1000)]
    with ManifestWriter(tmp_path / "m.jsonl") as w:
        for r in rows:
            w.write(r)
    index = ResumeIndex.load(tmp_path / "m.jsonl", "m", "s")
    assert len(index) == 1000
    assert index.lookup("/data/7.jpg", 7, 1.5) is not None
    assert index.lookup("/data/7.jpg", 8, 1.5) is None and index.lookup("/data/7.jpg", 7, 2.0) is None


def test_cli_curate(tiny_model_dir, dataset, tmp_path, capsys):
    from effres_core.cli import main

    root, _ = dataset
    before = snapshot(root)
    code = main(["curate", str(root), "--model", str(tiny_model_dir), "--detector", "haar", "--masker", "ellipse",
                 "--copy-to", str(tmp_path / "kept"), "--dry-run", "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1  # two files failed
    assert "dry run: 6 files: 4 kept, 0 rejected, 2 failed" in err and "would copy" in err
    assert snapshot(root) == before and not (tmp_path / "kept").exists()
    assert main(["curate", str(root), "--min-ratio", "2"]) == 2
    manifest = tmp_path / "m.parquet"
    code = main(["curate", str(root), "--model", str(tiny_model_dir), "--detector", "haar", "--masker", "ellipse",
                 "--manifest", str(manifest), "--quiet", "--device", "cpu", "--workers", "2", "--batch-size", "8"])
    assert code == 1 and len(read_manifest(manifest)) == 6


def test_a_move_killed_between_link_and_unlink_is_finished_on_resume(tmp_path):
    import hashlib

    src = tmp_path / "a.jpg"
    src.write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    (tmp_path / "kept").mkdir()
    os.link(src, tmp_path / "kept" / "a.jpg")  # where a kill after os.link leaves a move
    move = Action("move", str(tmp_path / "kept"))
    assert apply(move, str(src), "a.jpg", sha, dry_run=True)[1] == "exists" and src.exists()
    assert apply(move, str(src), "a.jpg", sha)[1] == "done"
    assert not src.exists() and (tmp_path / "kept" / "a.jpg").read_bytes() == b"abc"
    assert apply(move, str(src), "a.jpg", sha)[1] == "exists"  # and again: nothing left to do
