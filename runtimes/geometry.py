"""Patch cells <-> pixels of the original frame, for artifacts whose resize rule is "stretch".

Preprocessing stretches the whole frame (no crop, no padding) to the model input, so patch cell (row, col)
covers the pixel box x in [col * sx, (col + 1) * sx), y in [row * sy, (row + 1) * sy) with
sx = frame_width / grid_width and sy = frame_height / grid_height. Continuous grid coordinates put the
centre of cell (row, col) at (col + 0.5, row + 0.5), which maps sub-patch positions both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_vsd.runtimes.errors import RuntimeInputError


@dataclass(frozen=True)
class PatchGrid:
    """The patch grid of one frame size: `frame_hw` pixels, `grid_hw` cells, `input_hw` model input."""

    frame_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    input_hw: tuple[int, int]
    patch: int
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if self.resize != "stretch":
            raise RuntimeInputError(f"resize rule {self.resize!r}: only 'stretch' maps patches to pixels")
        if min(*self.frame_hw, *self.grid_hw) <= 0:
            raise RuntimeInputError(f"empty frame {self.frame_hw} or grid {self.grid_hw}")

    @classmethod
    def for_encoder(cls, encoder: Any, frame_hw: tuple[int, int]) -> PatchGrid:
        """The grid an `Encoder` produces for frames of `frame_hw` (H, W) pixels."""
        return cls(
            (int(frame_hw[0]), int(frame_hw[1])),
            tuple(encoder.grid),
            tuple(encoder.image_size),
            int(encoder.manifest["model"]["patch_size"]),
            encoder.spec.resize,
        )

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> PatchGrid:
        """Inverse of `to_dict`, e.g. `PatchGrid.from_dict(read_meta(data)["patch_to_pixel"])`."""
        return cls(
            tuple(record["frame_size_hw"]),
            tuple(record["grid_hw"]),
            tuple(record["input_size_hw"]),
            int(record["patch"]),
            record["resize"],
        )

    @property
    def cell_size(self) -> tuple[float, float]:
        """(height, width) of one cell in frame pixels."""
        return self.frame_hw[0] / self.grid_hw[0], self.frame_hw[1] / self.grid_hw[1]

    def cell_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Pixel box (x0, y0, x1, y1) that cell (row, col) covers."""
        sy, sx = self.cell_size
        return col * sx, row * sy, (col + 1) * sx, (row + 1) * sy

    def cell_center(self, row: int, col: int) -> tuple[float, float]:
        """Pixel (x, y) of the centre of cell (row, col)."""
        return self.grid_to_pixel(col + 0.5, row + 0.5)

    def point_to_cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of the cell covering pixel (x, y), clamped to the grid."""
        gx, gy = self.pixel_to_grid(x, y)
        gh, gw = self.grid_hw
        return min(gh - 1, max(0, int(gy))), min(gw - 1, max(0, int(gx)))

    def pixel_to_grid(self, x: float, y: float) -> tuple[float, float]:
        """Continuous grid coordinates (gx, gy) of pixel (x, y); cell (r, c) spans [c, c+1) x [r, r+1)."""
        sy, sx = self.cell_size
        return x / sx, y / sy

    def grid_to_pixel(self, gx: float, gy: float) -> tuple[float, float]:
        """Pixel (x, y) of continuous grid coordinates (gx, gy)."""
        sy, sx = self.cell_size
        return gx * sx, gy * sy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the mapping, as `extract` writes it."""
        sy, sx = self.cell_size
        return {
            "frame_size_hw": list(self.frame_hw),
            "input_size_hw": list(self.input_hw),
            "grid_hw": list(self.grid_hw),
            "patch": self.patch,
            "resize": self.resize,
            "cell_size_px_hw": [sy, sx],
            "cell_box": "cell (row, col) covers x in [col*sx, (col+1)*sx), y in [row*sy, (row+1)*sy)",
        }
