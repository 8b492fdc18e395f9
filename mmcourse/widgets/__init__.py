"""Interactive demos for the notebooks, built on ipywidgets, one module per widget.

The logic lives in plain Python classes whose controls are ordinary widgets, so tests can
set a control's value and check what changed, without a browser.
"""

from __future__ import annotations

from mmcourse.widgets.attention import AttentionExplorer
from mmcourse.widgets.captioning import CaptioningExplorer
from mmcourse.widgets.convolution import ConvolutionPlayground
from mmcourse.widgets.diffusion import DiffusionDrawer
from mmcourse.widgets.embeddings import EmbeddingExplorer
from mmcourse.widgets.latent import LatentSliders
from mmcourse.widgets.sampler import CaptionSampler
from mmcourse.widgets.scene import SceneComposer
from mmcourse.widgets.search import SearchWidget
from mmcourse.widgets.text_to_image import TextToImage
from mmcourse.widgets.vlm import VLMExplorer
from mmcourse.widgets.vqa import VQAExplorer

__all__ = ["SceneComposer", "EmbeddingExplorer", "ConvolutionPlayground", "CaptionSampler", "AttentionExplorer", "LatentSliders", "TextToImage", "CaptioningExplorer", "SearchWidget", "VQAExplorer", "VLMExplorer", "DiffusionDrawer"]
