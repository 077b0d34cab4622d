"""The figures' content, read back from matplotlib: what a user sees in the MLflow UI."""

from __future__ import annotations

import numpy as np

from cnnlab import plots


def test_image_grid_places_every_image_under_its_caption():
    images = np.arange(7 * 28 * 28, dtype=np.int64).reshape(7, 28, 28) % 251
    captions = [f"image {index}" for index in range(7)]

    figure = plots.image_grid(images.astype(np.uint8), captions, "seven", columns=3)
    mosaic = figure.axes[0].images[0].get_array()
    texts = {text.get_text(): text.get_position() for text in figure.axes[0].texts}
    plots.plt.close(figure)

    assert len(figure.axes) == 1 and set(texts) == set(captions)
    for index, image in enumerate(images.astype(np.uint8)):
        x, y = texts[f"image {index}"]
        left = int(x - 14)  # the caption sits centred just above its image
        below = [mosaic[top : top + 28, left : left + 28] for top in range(int(y), int(y) + 4)]
        assert any(np.array_equal(block, image) for block in below), index
    assert mosaic.shape[0] >= 3 * 28  # 7 images in 3 columns take 3 rows
