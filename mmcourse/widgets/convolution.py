"""The convolution playground: choose or set a 3×3 kernel, see it applied to a photograph."""

from __future__ import annotations

import ipywidgets as W
import numpy as np

from mmcourse import imageops
from mmcourse.viz import to_png
from mmcourse.widgets._dom import mark

__all__ = ["ConvolutionPlayground"]


_LUMINANCE = np.array([0.2125, 0.7154, 0.0721], np.float32)
#: The sliders' step. A browser rounds a weight to it and sends it back (1/9 → 0.11), so a named
#: kernel stays named, and exact, while every slider is within half a step of its weight.
STEP = 0.01


class ConvolutionPlayground:
    """Choose a classic kernel, or set a 3×3 kernel with nine sliders; see it applied to a photograph.

    The kernel is applied to each colour channel (or to the grey image) with
    :func:`mmcourse.imageops.filter_channels` ("same" padding). Attributes (widgets):
    ``kernel_name`` (a dropdown of :data:`~mmcourse.imageops.KERNELS` and ``"custom"``);
    ``sliders`` (3×3 list, ``sliders[u][v]`` is the kernel's weight ``k[u, v]``); ``grey``
    (work on the grey image); ``original`` and ``filtered`` (the pictures); ``info``.
    ``result`` is the filtered image as floats, before it is made displayable.

    Display: a kernel whose weights sum to (about) zero, such as an edge detector, gives
    signed responses around 0, so its absolute value is shown, scaled to the largest;
    other results are clipped to [0, 1].
    """

    def __init__(self, image=None, *, size: int = 192, scale: int = 1):
        if image is None:
            import skimage.data
            import skimage.transform

            image = skimage.transform.resize(skimage.data.astronaut(), (size, size), anti_aliasing=True)
        photo = np.asarray(image)
        if photo.ndim != 3 or photo.shape[-1] != 3:
            raise ValueError(f"ConvolutionPlayground takes an RGB image (h, w, 3); got shape {photo.shape}")
        self.photo = imageops.to_unit(photo)[0]  # float32 in [0, 1]
        self.scale = scale
        self.kernel_name = mark(W.Dropdown(options=[*imageops.KERNELS, "custom"], value="sobel x", description="kernel"), "kernel")
        self.sliders = [
            [W.FloatSlider(value=0.0, min=-4.0, max=4.0, step=STEP, readout_format=".2f", layout=W.Layout(width="190px")) for _ in range(3)]
            for _ in range(3)
        ]
        self.grey = W.Checkbox(value=True, description="grey image")
        h, w = self.photo.shape[:2]
        self.original = W.Image(format="png", layout=W.Layout(width=f"{w * scale}px", height=f"{h * scale}px"))
        self.filtered = mark(W.Image(format="png", layout=W.Layout(width=f"{w * scale}px", height=f"{h * scale}px")), "filtered")
        self.info = mark(W.HTML(), "info")
        self.result = None
        self._syncing = False
        self.kernel_name.observe(self._on_name, names="value")
        for row in self.sliders:
            for slider in row:
                slider.observe(self._on_slider, names="value")
        self.grey.observe(lambda change: self.update(), names="value")
        self._set_sliders(imageops.KERNELS[self.kernel_name.value])
        self.update()

    @property
    def kernel(self):
        """The 3×3 kernel the sliders now hold: the named kernel exactly while they show it."""
        named = imageops.KERNELS.get(self.kernel_name.value)
        return named.copy() if named is not None and self._shows(named) else self._slider_values()

    def _slider_values(self):
        return np.array([[s.value for s in row] for row in self.sliders], np.float32)

    def _shows(self, kernel) -> bool:
        return bool(np.all(np.abs(self._slider_values() - kernel) <= STEP / 2 + 1e-6))

    def _set_sliders(self, kernel) -> None:
        self._syncing = True
        try:
            for u in range(3):
                for v in range(3):
                    self.sliders[u][v].value = float(kernel[u, v])
        finally:
            self._syncing = False

    def _on_name(self, change) -> None:
        if change["new"] != "custom":
            self._set_sliders(imageops.KERNELS[change["new"]])
        self.update()

    def _on_slider(self, change) -> None:
        if self._syncing:
            return
        named = imageops.KERNELS.get(self.kernel_name.value)
        if named is not None and not self._shows(named):
            self._syncing = True  # switching the name to "custom" must not reset the sliders
            try:
                self.kernel_name.value = "custom"
            finally:
                self._syncing = False
        self.update()

    def source(self):
        """The image the kernel is applied to: the photograph, or its grey version."""
        if self.grey.value:
            return self.photo @ _LUMINANCE
        return self.photo

    @staticmethod
    def displayable(result, kernel):
        """Floats → uint8 RGB for the screen (absolute value for zero-sum kernels, else clipped)."""
        if abs(float(np.sum(kernel))) < 1e-6:
            peak = float(np.abs(result).max())
            shown = np.abs(result) / peak if peak > 0 else np.zeros_like(result)
        else:
            shown = np.clip(result, 0.0, 1.0)
        if shown.ndim == 2:
            shown = np.repeat(shown[..., None], 3, axis=-1)
        return imageops.to_uint8(shown)[0]

    def update(self) -> None:
        """Filter the image with the current kernel and redraw."""
        if self._syncing:
            return
        source = self.source()
        kernel = self.kernel
        self.result = imageops.filter_channels(source, kernel, padding="same")
        self.original.value = to_png(self.displayable(source, np.ones(1)), scale=self.scale)
        self.filtered.value = to_png(self.displayable(self.result, kernel), scale=self.scale)
        mode = "|response| (weights sum to 0)" if abs(float(kernel.sum())) < 1e-6 else "clipped to [0, 1]"
        self.info.value = f"kernel weights sum to <b>{kernel.sum():.2f}</b> · showing {mode}"

    def widget(self) -> W.Widget:
        grid = W.VBox([W.HBox(row) for row in self.sliders])
        controls = W.VBox([W.HBox([self.kernel_name, self.grey]), grid, self.info])
        return mark(W.VBox([controls, W.HBox([self.original, self.filtered])]), "convolution-playground")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
