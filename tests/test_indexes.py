"""Dataset indexes: tiny fixtures in each public format -> expected entries, labels and errors."""
import json
import os

import pytest

from tfvid.prep.indexes import VideoEntry, load_index, ssv2_class_name


def _write(path, text, newline="\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace("\n", newline))
    return str(path)


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    return str(path)


# ---------------------------------------------------------------- UCF101

@pytest.fixture
def ucf(tmp_path):
    videos, index = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    # Real files use CRLF line endings.
    _write(index / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n", "\r\n")
    _write(index / "trainlist01.txt",
           "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
           "Archery/v_Archery_g08_c02.avi 2\n"
           "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n", "\r\n")
    _write(index / "testlist01.txt",
           "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
           "Archery/v_Archery_g01_c01.avi\n", "\r\n")
    for line in ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g01_c01.avi"]:
        _touch(videos / line)
    return str(videos), str(index)


def test_ucf101_train_and_test(ucf):
    videos, index = ucf
    entries, classes = load_index("ucf101", videos_dir=videos, index=index, split="train1")
    assert classes == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    assert [e.label for e in entries] == [0, 1, 2]
    assert entries[0] == VideoEntry("v_ApplyEyeMakeup_g08_c01",
                                    os.path.join(videos, "ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01.avi"),
                                    0, "ApplyEyeMakeup", "train1")
    assert entries[2].label_name == "HandstandPushups"
    test, _ = load_index("ucf101", videos_dir=videos, index=index, split="test")
    assert [(e.video_id, e.label) for e in test] == [("v_ApplyEyeMakeup_g01_c01", 0),
                                                     ("v_Archery_g01_c01", 1)]
    assert all(os.path.isabs(e.path) for e in test)


def test_ucf101_errors(ucf, tmp_path):
    videos, index = ucf
    with pytest.raises(FileNotFoundError, match="trainlist02.txt"):
        load_index("ucf101", videos_dir=videos, index=index, split="train2")
    with pytest.raises(ValueError, match="train1..train3"):
        load_index("ucf101", videos_dir=videos, index=index, split="val")
    _write(os.path.join(index, "testlist02.txt"), "ApplyEyeMakeup/v_a.avi\nBowling/v_Bowling_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist02.txt:2: unknown class name 'Bowling'"):
        load_index("ucf101", videos_dir=videos, index=index, split="test2")
    _write(os.path.join(index, "trainlist03.txt"), "ApplyEyeMakeup/v_a.avi 1\nno_slash_here 1 2\n")
    with pytest.raises(ValueError, match=r"trainlist03.txt:2: malformed line"):
        load_index("ucf101", videos_dir=videos, index=index, split="train3")


def test_unknown_format_and_missing_paths(ucf, tmp_path):
    videos, index = ucf
    with pytest.raises(ValueError, match="ucf101, hmdb51, kinetics, ssv2, jester, folder, csv"):
        load_index("ucf102", videos_dir=videos, index=index, split="train1")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_index("ucf101", videos_dir=str(tmp_path / "nowhere"), index=index, split="train1")
    with pytest.raises(FileNotFoundError, match="nolist"):
        load_index("ucf101", videos_dir=videos, index=str(tmp_path / "nolist"), split="train1")


# ---------------------------------------------------------------- HMDB51

def test_hmdb51(tmp_path):
    index = tmp_path / "testTrainMulti_7030_splits"
    _write(index / "brush_hair_test_split1.txt", "a1.avi 1 \nb1.avi 2 \nc1.avi 0 \n")
    _write(index / "cartwheel_test_split1.txt", "d1.avi 2 \ne1.avi 1 \n")
    _write(index / "cartwheel_test_split2.txt", "d1.avi 1 \n")
    os.makedirs(tmp_path / "hmdb")
    train, classes = load_index("hmdb51", videos_dir=str(tmp_path / "hmdb"), index=str(index),
                                split="train1")
    assert classes == ["brush_hair", "cartwheel"]
    assert [(e.video_id, e.label) for e in train] == [("a1", 0), ("e1", 1)]
    assert train[1].path == str(tmp_path / "hmdb" / "cartwheel" / "e1.avi")
    test, _ = load_index("hmdb51", videos_dir=str(tmp_path / "hmdb"), index=str(index), split="test1")
    assert [(e.video_id, e.label) for e in test] == [("b1", 0), ("d1", 1)]
    with pytest.raises(FileNotFoundError, match="_test_split3.txt"):
        load_index("hmdb51", videos_dir=str(tmp_path / "hmdb"), index=str(index), split="test3")
    _write(index / "cartwheel_test_split1.txt", "d1.avi 2\ne1.avi 7\n")
    with pytest.raises(ValueError, match=r"cartwheel_test_split1.txt:2: malformed line"):
        load_index("hmdb51", videos_dir=str(tmp_path / "hmdb"), index=str(index), split="train1")


# ---------------------------------------------------------------- Kinetics

KINETICS_CSV = (
    "label,youtube_id,time_start,time_end,split\n"
    "abseiling,---QUuC4vJs,3,13,train\n"
    '"passing American football (in game)",--6bJUbfpnQ,17,27,train\n'
    "abseiling,-0NJoaxdJKo,10,20,val\n"
    "air drumming,AAAAAAAAAAA,0,10,train\n"
    "air drumming,BBBBBBBBBBB,5,15,val\n"
    "passing American football (in game),CCCCCCCCCCC,30,40,val\n"
)


def test_kinetics(tmp_path):
    videos = tmp_path / "k400"
    csv_path = _write(tmp_path / "kinetics400.csv", KINETICS_CSV)
    a = _touch(videos / "abseiling" / "---QUuC4vJs_000003_000013.mp4")          # standard naming
    b = _touch(videos / "val" / "abseiling" / "-0NJoaxdJKo_000010_000020.mp4")  # split folder
    c = _touch(videos / "misc" / "BBBBBBBBBBB_raw.webm")                       # youtube-id prefix
    train, classes = load_index("kinetics", videos_dir=str(videos), index=csv_path, split="train")
    assert classes == ["abseiling", "air drumming", "passing American football (in game)"]
    assert [(e.video_id, e.label) for e in train] == [
        ("---QUuC4vJs_000003_000013", 0), ("--6bJUbfpnQ_000017_000027", 2),
        ("AAAAAAAAAAA_000000_000010", 1)]
    assert train[0].path == a
    # A missing file keeps its expected standard path (preparation rejects it as not found).
    assert train[1].path == str(videos / "passing American football (in game)" /
                                "--6bJUbfpnQ_000017_000027.mp4")
    val, _ = load_index("kinetics", videos_dir=str(videos), index=csv_path, split="validate")
    assert [e.path for e in val][:2] == [b, c]
    assert [e.label for e in val] == [0, 1, 2]
    # Test CSVs have no label column: label None.
    test_csv = _write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\nDDDDDDDDDDD,1,11,test\n")
    test, _ = load_index("kinetics", videos_dir=str(videos), index=test_csv, split="test",
                         classes_file=_write(tmp_path / "labels.txt", "abseiling\nair drumming\n"))
    assert [(e.video_id, e.label, e.label_name) for e in test] == [("DDDDDDDDDDD_000001_000011", None, None)]


def test_kinetics_errors(tmp_path):
    os.makedirs(tmp_path / "v")
    bad = _write(tmp_path / "bad.csv", "label,youtube_id,time_start,time_end,split\nx,AAAAAAAAAAA,zz,10,train\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: malformed time_start"):
        load_index("kinetics", videos_dir=str(tmp_path / "v"), index=bad, split="train")
    nohead = _write(tmp_path / "nohead.csv", "x,AAAAAAAAAAA,0,10,train\n")
    with pytest.raises(ValueError, match="nohead.csv: missing CSV column"):
        load_index("kinetics", videos_dir=str(tmp_path / "v"), index=nohead, split="train")
    good = _write(tmp_path / "good.csv", KINETICS_CSV)
    labels = _write(tmp_path / "labels.txt", "abseiling\n")
    with pytest.raises(ValueError, match=r"good.csv:3: unknown class name 'passing American"):
        load_index("kinetics", videos_dir=str(tmp_path / "v"), index=good, split="train",
                   classes_file=labels)


# ---------------------------------------------------------------- Something-Something v2

def test_ssv2(tmp_path):
    index = tmp_path / "labels"
    _write(index / "something-something-v2-labels.json",
           json.dumps({"Approaching something with your camera": "0",
                       "Putting something on something": "2",
                       "Holding something next to something": "1"}))
    _write(index / "something-something-v2-train.json", json.dumps([
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks"]},
        {"id": "42326", "label": "putting a cup on a table",
         "template": "Putting [something] on [something]", "placeholders": ["a cup", "a table"]}]))
    _write(index / "something-something-v2-validation.json", json.dumps([
        {"id": "1", "label": "x", "template": "Approaching [something] with your camera",
         "placeholders": ["x"]}]))
    _write(index / "something-something-v2-test.json", json.dumps([{"id": "1420"}]))
    os.makedirs(tmp_path / "webm")
    videos = str(tmp_path / "webm")
    train, classes = load_index("ssv2", videos_dir=videos, index=str(index), split="train")
    assert classes == ["Approaching something with your camera",
                       "Holding something next to something", "Putting something on something"]
    assert [(e.video_id, e.label) for e in train] == [("78687", 1), ("42326", 2)]
    assert train[0].path == os.path.join(videos, "78687.webm")
    val, _ = load_index("ssv2", videos_dir=videos, index=str(index), split="val")
    assert [e.label for e in val] == [0]
    test, _ = load_index("ssv2", videos_dir=videos, index=str(index), split="test")
    assert test[0].label is None and test[0].video_id == "1420"
    assert ssv2_class_name("Pushing [something] from left to right") == \
        "Pushing something from left to right"
    _write(index / "something-something-v2-validation.json",
           json.dumps([{"id": "9", "template": "Juggling [something]"}]))
    with pytest.raises(ValueError, match=r"validation.json item 0: unknown class name 'Juggling"):
        load_index("ssv2", videos_dir=videos, index=str(index), split="validation")
    os.remove(index / "something-something-v2-test.json")
    with pytest.raises(FileNotFoundError, match="something-something-v2-test.json"):
        load_index("ssv2", videos_dir=videos, index=str(index), split="test")


# ---------------------------------------------------------------- Jester / Something-Something v1

def test_jester_and_ssv1(tmp_path):
    index, videos = tmp_path / "csv", tmp_path / "frames"
    os.makedirs(videos)
    _write(index / "jester-v1-labels.csv", "Swiping Left\nSwiping Right\n\nNo gesture\n")
    _write(index / "jester-v1-train.csv", "34870;Swiping Right\n56557;No gesture\n", "\r\n")
    _write(index / "jester-v1-validation.csv", "9223;Swiping Left\n")
    _write(index / "jester-v1-test.csv", "1;\n2\n")
    train, classes = load_index("jester", videos_dir=str(videos), index=str(index), split="train")
    assert classes == ["Swiping Left", "Swiping Right", "No gesture"]
    assert train == [VideoEntry("34870", os.path.join(str(videos), "34870"), 1, "Swiping Right",
                                "train", frame_folder=True),
                     VideoEntry("56557", os.path.join(str(videos), "56557"), 2, "No gesture",
                                "train", frame_folder=True)]
    val, _ = load_index("jester", videos_dir=str(videos), index=str(index), split="validation")
    assert [(e.video_id, e.label) for e in val] == [("9223", 0)]
    test, _ = load_index("jester", videos_dir=str(videos), index=str(index), split="test")
    assert [(e.video_id, e.label) for e in test] == [("1", None), ("2", None)]
    with pytest.raises(ValueError, match="jester split must be train, validation or test"):
        load_index("jester", videos_dir=str(videos), index=str(index), split="train1")
    _write(index / "jester-v1-validation.csv", "9223;Juggling\n")
    with pytest.raises(ValueError, match=r"validation.csv:1: unknown class name 'Juggling'"):
        load_index("jester", videos_dir=str(videos), index=str(index), split="validation")
    _write(index / "jester-v1-validation.csv", "9223;Swiping Left\n9223;Swiping Left\n")
    with pytest.raises(ValueError, match=r"validation.csv:2: video id '9223' already listed"):
        load_index("jester", videos_dir=str(videos), index=str(index), split="validation")
    _write(index / "jester-v1-validation.csv", ";Swiping Left\n")
    with pytest.raises(ValueError, match=r"validation.csv:1: malformed line"):
        load_index("jester", videos_dir=str(videos), index=str(index), split="validation")
    os.remove(index / "jester-v1-test.csv")
    with pytest.raises(FileNotFoundError, match="jester-v1-test.csv"):
        load_index("jester", videos_dir=str(videos), index=str(index), split="test")
    # Something-Something v1: the same layout under its own prefix.
    ss = tmp_path / "ssv1"
    _write(ss / "something-something-v1-labels.csv",
           "Holding something\nPutting something on a surface\n")
    _write(ss / "something-something-v1-train.csv", "100218;Putting something on a surface\n")
    train, classes = load_index("jester", videos_dir=str(videos), index=str(ss), split="train")
    assert classes[1] == "Putting something on a surface"
    assert [(e.video_id, e.label) for e in train] == [("100218", 1)]
    nothing = tmp_path / "nothing"
    os.makedirs(nothing)
    with pytest.raises(FileNotFoundError, match=r"no jester-v1-labels.csv or "
                       r"something-something-v1-labels.csv in the index folder .*nothing"):
        load_index("jester", videos_dir=str(videos), index=str(nothing), split="train")


# ---------------------------------------------------------------- folder and CSV

def test_folder(tmp_path):
    root = tmp_path / "myset"
    _touch(root / "wave" / "a.mp4")
    _touch(root / "wave" / "sub" / "b.MKV")
    _touch(root / "clap" / "c.webm")
    _touch(root / "clap" / "notes.txt")
    entries, classes = load_index("folder", videos_dir=str(root), split="all")
    assert classes == ["clap", "wave"]
    assert [(e.video_id, e.label, e.split) for e in entries] == [
        ("clap/c", 0, "all"), ("wave/a", 1, "all"), ("wave/sub/b", 1, "all")]
    empty = tmp_path / "empty"
    os.makedirs(empty)
    with pytest.raises(ValueError, match="no class subfolders"):
        load_index("folder", videos_dir=str(empty), split="all")


def test_csv(tmp_path):
    os.makedirs(tmp_path / "v")
    videos = str(tmp_path / "v")
    named = _write(tmp_path / "named.csv", "path,label\nx/a.mp4,run\nb.mp4,jump\nc.mp4,run\nd.mp4,\n")
    entries, classes = load_index("csv", videos_dir=videos, index=named, split="train")
    assert classes == ["jump", "run"]
    assert [(e.video_id, e.label) for e in entries] == [("x/a", 1), ("b", 0), ("c", 1), ("d", None)]
    assert entries[0].path == os.path.join(videos, "x", "a.mp4")
    numbered = _write(tmp_path / "numbered.csv", "a.mp4,2\nb.mp4,0\n")  # no header
    entries, classes = load_index("csv", videos_dir=videos, index=numbered, split="train")
    assert classes == ["0", "1", "2"] and [e.label for e in entries] == [2, 0]
    entries, classes = load_index("csv", videos_dir=videos, index=numbered, split="train",
                                  classes_file=_write(tmp_path / "c.txt", "1 zero\n2 one\n3 two\n"))
    assert classes == ["zero", "one", "two"] and entries[0].label_name == "two"
    bad = _write(tmp_path / "bad.csv", "path,label\na.mp4,run\nb.mp4,jump,train,extra\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: malformed line"):
        load_index("csv", videos_dir=videos, index=bad, split="train")
    with pytest.raises(ValueError, match=r"named.csv:3: unknown class name 'jump'"):
        load_index("csv", videos_dir=videos, index=named, split="train",
                   classes_file=_write(tmp_path / "r.txt", "run\n"))
    with pytest.raises(ValueError, match=r"numbered.csv:1: label 2 is not in 0..1"):
        load_index("csv", videos_dir=videos, index=numbered, split="train",
                   classes_file=_write(tmp_path / "two.txt", "p\nq\n"))
