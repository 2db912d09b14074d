"""One image file -> a C x H x W uint8 tensor, the way the ``folder`` dataset reads it.

:func:`read_image` is copied into an export's ``model.py`` from this file's source, with :data:`IMAGE_BACKGROUND`
beside it, so that a user's own PNG reaches the exported network exactly as the training images did: it uses torch
and Pillow only (Pillow imported when called), never numpy or archsearch.
"""

from __future__ import annotations

import torch

__all__ = ["read_image", "IMAGE_EXTENSIONS", "IMAGE_BACKGROUND"]

# what Pillow decodes and the folder dataset reads; any other file in a class folder is left out, with a note
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".pgm", ".ppm")

# the grey level (0 to 255, white) that transparent pixels are laid on: what they look like in most viewers
IMAGE_BACKGROUND = 255


def read_image(path, mode="RGB", size=None):
    """The image at ``path`` as a C x H x W uint8 tensor: ``mode`` "L" (1 channel) or "RGB" (3).

    The image is turned upright first (its EXIF orientation, as a camera records it), and one with transparency
    (RGBA, LA, PA, or a palette or colour key marked transparent) is laid on a background of grey level
    ``IMAGE_BACKGROUND`` (255: white) before it is converted. With ``size``, the shorter side is resized to
    ``size`` (Pillow's bilinear filter, which antialiases when it shrinks) and the centre ``size`` x ``size``
    square is kept; without, the image is kept as it is.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.load()  # decode now: a truncated or corrupt file fails here, inside the with
        try:
            img = ImageOps.exif_transpose(img)  # upright, as a copy (a copy also where it has no orientation)
        except Exception:  # an unreadable EXIF block: the pixels as stored
            img = img.copy()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("1", "L", "P", "RGB") and "transparency" in img.info):
            background = Image.new("RGBA", img.size, (IMAGE_BACKGROUND,) * 3 + (255,))
            img = Image.alpha_composite(background, img.convert("RGBA"))  # grey stays grey: LA keeps 1 channel
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: to 8 bits, keeping the top byte
            img = img.point(lambda v: v / 256).convert("L")
        if img.mode != mode:
            img = img.convert(mode)
    if size is not None:
        w, h = img.size
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    channels = 3 if mode == "RGB" else 1
    w, h = img.size
    x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return x.view(h, w, channels).permute(2, 0, 1).contiguous()  # H x W x C -> C x H x W
