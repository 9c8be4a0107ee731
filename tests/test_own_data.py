"""What every tool reads of a user's COCO file and class list (resnest_backbones.own_data), framework-free: a file
that the frameworks would train on wrongly or fail on deep inside (an annotation of an unlisted category, no
``area``, an image not on disk...) is refused before anything is built, in one line that names the entry and says
what to give; the class order each framework numbers; and the images the tools read are upright and complete
(EXIF orientation, subfolders)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
from PIL import Image

from resnest_backbones.own_data import category_names, coco_files, read_coco, segmentation_class_names
from resnest_backbones.predict import list_images, read_image


def _sample(own_sample: dict) -> Dict[str, Any]:
    return json.loads(Path(own_sample["train_json"]).read_text())


def _drop(key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["annotations"][1].pop(key)


def _set(key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["annotations"][1].update({key: value})


def _image_name(name: str) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["images"][4].update(file_name=name)


@pytest.mark.parametrize("change, message", [
    (_set("category_id", 5), r"annotations\[1\] \(id 2\) has category_id 5, which 'categories' does not list "
                             r"\(ids 9, 3\): add the category or fix the annotation"),
    (_drop("area"), r"annotations\[1\] has no 'area': each entry needs id, image_id, category_id, bbox, area "
                    r"\(area: the object's area in pixels, which COCO evaluation reads"),
    (_set("image_id", 999), r"annotations\[1\] \(id 2\) has image_id 999, which 'images' does not list"),
    (_set("bbox", [1, 2, 3]), r"annotations\[1\] \(id 2\) has bbox \[1, 2, 3\]: give \[x, y, width, height\]"),
    (_set("id", 1), r"two annotations have the id 1: give each its own"),
    (lambda data: data["categories"].append({"id": 11, "name": "kettle"}),
     r"two categories have the name 'kettle': give each its own"),
    (lambda data: data["images"][0].pop("height"), r"images\[0\] has no 'height': each entry needs id, file_name, "
                                                   r"width, height"),
    (_image_name("cam1/IMG_7.JPG"), r"1 of its 24 images are not in .*, e.g. 'cam1/IMG_7.JPG' \(file_name is "
                                   r"relative to the image folder given with the file\)"),
    (lambda data: data.pop("categories"), r"a COCO instances file is a JSON object with the lists 'images', "
                                          r"'annotations', 'categories'"),
])
def test_a_file_the_frameworks_would_misread_is_refused_naming_the_entry(own_sample: dict, tmp_path: Path,
                                                                          change: Callable, message: str) -> None:
    data = _sample(own_sample)
    read_coco(own_sample["train_json"], own_sample["train_images"])  # the sample itself passes
    change(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match=rf"^{path}: {message}"):
        read_coco(path, own_sample["train_images"])


def test_missing_or_swapped_files_and_folders_are_named(own_sample: dict, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"cannot read .*instances_trian\.json as a COCO instances file: "
                                         r"\[Errno 2\] No such file"):
        read_coco(tmp_path / "instances_trian.json")
    with pytest.raises(SystemExit, match=r"image folder .*nowhere does not exist \(give the folder the file_name "
                                         r"entries of .*train\.json are relative to\)"):
        coco_files(own_sample["train_json"], tmp_path / "nowhere")
    with pytest.raises(SystemExit, match=r"train is a folder and .*train\.json a file: give the instances file "
                                         r"first, then the image folder"):
        coco_files(own_sample["train_images"], own_sample["train_json"])


def test_class_order_is_the_frameworks_own(own_sample: dict) -> None:
    """The sample lists category 9 before 3: detectron2 and torchvision number the classes in id order, MMDetection
    in the file's order (its CocoDataset's cat2label)."""
    data = read_coco(own_sample["train_json"])
    assert [c["id"] for c in data["categories"]] == [9, 3]
    assert category_names(data) == ["kettle", "teapot"]
    assert category_names(data, order="file") == ["teapot", "kettle"]
    assert coco_files(own_sample["train_json"], own_sample["train_images"], order="file") == ["teapot", "kettle"]


def test_a_mistyped_class_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"--classes .*clases\.txt: no such file"):
        segmentation_class_names([str(tmp_path / "clases.txt")])
    (tmp_path / "classes.txt").write_text("background\nparked car\n")
    assert segmentation_class_names([str(tmp_path / "classes.txt")]) == ["background", "parked car"]


def test_images_are_read_upright_as_the_frameworks_read_them(own_sample: dict) -> None:
    """The sample's ``*_sideways.jpg`` stores its pixels turned, with EXIF orientation 6 (as cameras write them);
    read, it has the size its COCO entry gives, as detectron2's and mmcv's readers return it."""
    data = read_coco(own_sample["val_json"])
    entry = next(i for i in data["images"] if i["file_name"].endswith("_sideways.jpg"))
    path = Path(own_sample["val_images"]) / entry["file_name"]
    with Image.open(path) as stored:
        assert stored.size == (entry["height"], entry["width"])  # the file itself is sideways
    assert read_image(path).shape == (entry["height"], entry["width"], 3)


def test_folders_are_listed_with_their_subfolders(own_sample: dict, tmp_path: Path) -> None:
    for sub in ("cam1", "cam2/night"):
        (tmp_path / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sub / "frame.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_images([tmp_path]) == [tmp_path / "cam1" / "frame.PNG", tmp_path / "cam2" / "night" / "frame.PNG"]



def test_pictures_keep_the_subfolders_of_their_images(tmp_path: Path) -> None:
    """A folder with subfolders (cam1/frame.jpg, cam2/frame.jpg) is drawn into the same subfolders, so each picture
    says which image it shows; two images of one stem in one folder get a numbered second name."""
    from resnest_backbones.predict import predict_images

    sources = [tmp_path / "in" / name for name in ("cam1/frame.jpg", "cam1/frame.png", "cam2/night/frame.jpg")]
    for source in sources:
        source.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 9, 3), 80, np.uint8)).save(source)
    out = tmp_path / "out"
    written = predict_images(lambda image: image, list_images([tmp_path / "in"]), out, progress=False)
    assert [p.relative_to(out).as_posix() for p in written] == ["cam1/frame.png", "cam1/frame_2.png",
                                                               "cam2/night/frame.png"]
    assert all(read_image(p).shape == (6, 9, 3) for p in written)
