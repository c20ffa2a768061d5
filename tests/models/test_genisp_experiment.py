"""The GenISP synthetic low-light experiment runs end to end at tiny sizes and writes its table."""
import json

from isp_tf.models.genisp import experiment


def test_experiment_tiny(tmp_path):
    out = tmp_path / "exp"
    argv = ["--out", str(out), "--images", "6", "--size", "64", "--detector-steps", "4",
            "--genisp-steps", "2", "--batch-size", "2", "--seed", "0"]
    assert experiment.main(argv) == 0
    data = out / "data"
    assert len(list((data / "images").glob("*.dng"))) == 6
    for split in ("train", "val"):
        coco = json.loads((data / "annotations" / f"raw_new_Synth_{split}.json").read_text())
        assert coco["images"] and len(coco["categories"]) == len(experiment.CLASSES)
    assert (out / "detector_light.h5").is_file()
    assert (out / "genisp_run" / "final.weights.h5").is_file()
    table = (out / "results.md").read_text()
    assert "| input to the detector | AP | AP50 |" in table
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"detector(well-exposed sRGB) [reference]", "detector(classical render(raw))",
                            "detector(rawpy render(DNG))", "detector(GenISP(raw))"}
    for name, r in results.items():
        assert name in table
        for key in ("AP", "AP50", "AP75"):
            assert r[key] == -1.0 or 0.0 <= r[key] <= 1.0, (name, key, r[key])
        assert all(v == -1.0 or 0.0 <= v <= 1.0 for v in r["per_class"].values())


def test_help_lists_the_flags(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        experiment.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--images", "--size", "--detector-steps", "--genisp-steps", "--seed"):
        assert flag in text
