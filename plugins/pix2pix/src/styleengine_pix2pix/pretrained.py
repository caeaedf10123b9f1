"""Published pix2pix generators (``engine pull pix2pix:<name>``).

The URLs are the ones the reference's ``scripts/download_pix2pix_model.sh`` fetches
(``http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/<name>.pth``; that script lists
edges2shoes, sat2map, map2sat, facades_label2photo and day2night).  All are ``unet_256``, ngf 64, batch
norm, dropout, trained at 256 x 256.  ``direction`` records which side of the paired dataset was the
input (the facades and maps folders store photo | label and satellite | map, hence BtoA for
label2photo and map2sat).

**sha256 is None for every entry**: the reference publishes no checksums and this machine cannot
download the files to compute them, so the download is not integrity-checked (and the server speaks
plain http).  ``engine pull`` prints and records the sha256 of what it downloaded; pin it here once
verified.  Offline (``STYLEENGINE_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) the pull fails with a message
saying where to put the file instead.
"""

from __future__ import annotations

from styleengine.pull import Pretrained

URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"

_MODELS: dict[str, tuple[str, str]] = {
    "facades_label2photo": ("BtoA", "CMP Facades: architectural label map -> photo"),
    "sat2map": ("AtoB", "Google Maps: aerial photo -> map"),
    "map2sat": ("BtoA", "Google Maps: map -> aerial photo"),
    "edges2shoes": ("AtoB", "UT Zappos50K: edge map -> shoe photo"),
    "day2night": ("AtoB", "Transient Attributes: daytime -> night-time scene"),
}

PRETRAINED: dict[str, Pretrained] = {
    name: Pretrained(
        url=URL.format(name=name),
        sha256=None,  # not published by the reference; see the module docstring
        description=desc,
        model_config={"netG": "unet_256", "ngf": 64, "norm": "batch", "input_nc": 3, "output_nc": 3, "direction": direction},
        filename=f"{name}.pth",
    )
    for name, (direction, desc) in _MODELS.items()
}
