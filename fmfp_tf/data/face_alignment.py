"""Face crops for the face datasets: MTCNN detection and alignment, or a fixed centred crop.

MTCNN (Zhang et al. 2016) comes from the `mtcnn` package (1.0.0), whose P-, R- and O-Net weights
ship inside the wheel, so it works offline. The aligned crop rotates the image about the eyes'
midpoint so that the eyes lie level, then takes a square around the detected box (enlarged by
`margin`). Where MTCNN finds no face the centred crop is used, and the count is reported.
"""
import numpy as np

CROPS = ("none", "center", "mtcnn")
_DETECTOR = None


def _detector():
    global _DETECTOR
    if _DETECTOR is None:
        from mtcnn import MTCNN

        _DETECTOR = MTCNN()
    return _DETECTOR


def center_crop(image):
    """The largest centred square (PIL image in, PIL image out)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def mtcnn_crop(image, margin=0.15, stats=None):
    """An eye-aligned square face crop, or the centred crop when no face is found."""
    from PIL import Image

    rgb = np.asarray(image.convert("RGB"))
    faces = _detector().detect_faces(rgb)
    if not faces:
        if stats is not None:
            stats["no_face"] = stats.get("no_face", 0) + 1
        return center_crop(image)
    face = max(faces, key=lambda f: f["confidence"])
    (lx, ly), (rx, ry) = face["keypoints"]["left_eye"], face["keypoints"]["right_eye"]
    angle = np.degrees(np.arctan2(float(ry - ly), float(rx - lx)))
    centre = ((lx + rx) / 2.0, (ly + ry) / 2.0)
    rotated = image.rotate(angle, resample=Image.BILINEAR, center=centre)
    x, y, w, h = face["box"]
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    box = (int(round(cx - side / 2)), int(round(cy - side / 2)),
           int(round(cx + side / 2)), int(round(cy + side / 2)))
    if stats is not None:
        stats["aligned"] = stats.get("aligned", 0) + 1
    return rotated.crop(box)  # PIL pads areas outside the image with black


def transform(crop, stats=None):
    """A PIL-image transform for `crop` ('none', 'center' or 'mtcnn'), or None."""
    if crop == "none":
        return None
    if crop == "center":
        return center_crop
    return lambda image: mtcnn_crop(image, stats=stats)
