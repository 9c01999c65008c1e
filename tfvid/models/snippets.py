"""Snippets of the 2D-backbone models: the input modalities, frames per snippet (L) and the
channels of one snippet (TSN section 3.1; shared by TSN, DIN, VideoMap and the model specs).
"""
MODALITIES = ("rgb", "flow", "rgbdiff")
# Frames per snippet (L, "new_length") and dropout ratio per modality, from the paper and the
# authors' code: RGB 1 frame, flow 5 (x, y) pairs, RGB difference 6 frames -> 5 differences.
DEFAULT_NEW_LENGTH = {"rgb": 1, "flow": 5, "rgbdiff": 6}
DEFAULT_DROPOUT = {"rgb": 0.8, "flow": 0.7, "rgbdiff": 0.7}


def snippet_channels(modality, new_length):
    """Channels C of one snippet: 3L (rgb), 2L interleaved x1,y1,..,xL,yL (flow),
    3(L-1) stacked frame differences (rgbdiff)."""
    if modality == "rgb":
        return 3 * new_length
    if modality == "flow":
        return 2 * new_length
    if modality == "rgbdiff":
        if new_length < 2:
            raise ValueError("modality 'rgbdiff' needs new_length >= 2 frames per snippet "
                             f"(got {new_length})")
        return 3 * (new_length - 1)
    raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
