"""The OLTR benchmarks ImageNet-LT, Places-LT and MS1M-LT (Liu et al. 2019), from split files.

Registered as `imagenet_lt`, `places_lt` and `ms1m_lt`: each reads
`{prefix}_{split}.txt` split files (`ImageNet_LT_train.txt`, ...) into a
`SplitFileDataset`.
"""

from __future__ import annotations

import os

from keras_oltr.data import split_names
from keras_oltr.data.registry import register_dataset
from keras_oltr.data.split_file_parser import read_class_names
from keras_oltr.data.split_files import SplitFileDataset


def _official(prefix, name, data_root, split_dir, num_classes, class_names_file, **kwargs):
    if not os.path.isdir(data_root):
        raise ValueError(
            f"Image folder `data_root` (--data_root) does not exist. Received: "
            f"data_root={data_root!r}"
        )
    if not os.path.isdir(split_dir):
        raise ValueError(
            f"Folder of the {prefix} split files does not exist. Received: split_dir={split_dir!r}"
        )
    files = {s: os.path.join(split_dir, f"{prefix}_{s}.txt") for s in split_names.SPLITS}
    if not os.path.isfile(files["open_val"]):  # not part of the official release
        del files["open_val"]
    return SplitFileDataset(
        data_root=data_root,
        split_files=files,
        name=name,
        num_classes=num_classes,
        class_names=read_class_names(class_names_file),
        **kwargs,
    )


@register_dataset("imagenet_lt")
def imagenet_lt(
    *,
    data_root: str = "data/ImageNet",
    split_dir: str = "data/ImageNet_LT",
    image_size: int = 224,
    class_names_file: str | None = None,
    **kwargs,
) -> SplitFileDataset:
    """ImageNet-LT (Liu et al. 2019): 1000 classes, ImageNet_LT_{train,val,test,open}.txt.

    Args:
        data_root: ImageNet folder the relative paths start from (train/, val/, ...).
        split_dir: folder holding the split files.
        image_size: model input size.
        class_names_file: optional file with 1000 class names, one per line.
        **kwargs: further `SplitFileDataset` arguments (e.g. check_files).
    """
    return _official(
        "ImageNet_LT",
        "imagenet_lt",
        data_root,
        split_dir,
        1000,
        class_names_file,
        image_size=image_size,
        **kwargs,
    )


@register_dataset("places_lt")
def places_lt(
    *,
    data_root: str = "data/Places365",
    split_dir: str = "data/Places_LT",
    image_size: int = 224,
    class_names_file: str | None = None,
    **kwargs,
) -> SplitFileDataset:
    """Places-LT (Liu et al. 2019): 365 classes, Places_LT_{train,val,test,open}.txt.

    Args: as `imagenet_lt`, with `data_root` the Places365 image folder.
    """
    return _official(
        "Places_LT",
        "places_lt",
        data_root,
        split_dir,
        365,
        class_names_file,
        image_size=image_size,
        **kwargs,
    )


@register_dataset("ms1m_lt")
def ms1m_lt(
    *,
    data_root: str = "data/MS1M",
    split_dir: str = "data/MS1M_LT",
    image_size: int = 112,
    class_names_file: str | None = None,
    **kwargs,
) -> SplitFileDataset:
    """MS1M-LT (Liu et al. 2019): 74,500 identities, MS1M_LT_{train,val,test,open}.txt.

    The paper samples about 887.5K train images of 74.5K identities from MS1M-ArcFace
    (each identity's images with a probability proportional to its image count) and
    releases no split files, so they are the user's (`make_splits` writes them in
    this format); open images are identities outside the 74,500 (label -1). Nothing
    is downloaded.

    Args:
        data_root: folder the relative paths start from (the extracted MS1M images).
        split_dir: folder holding the split files.
        image_size: model input size; 112, the side of MS1M-ArcFace's aligned face
            crops (the paper does not state its input size; 112 avoids upsampling).
        class_names_file: optional file with 74,500 identity names, one per line.
        **kwargs: further `SplitFileDataset` arguments (e.g. check_files).
    """
    return _official(
        "MS1M_LT",
        "ms1m_lt",
        data_root,
        split_dir,
        74_500,
        class_names_file,
        image_size=image_size,
        **kwargs,
    )
