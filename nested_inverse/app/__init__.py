"""The local web page (``nested-inverse serve``): upload or pick an image, restore it with nested
diffusion, watch every outer step's result arrive and steer the run (Stop, Resample, Edit, inner
steps). With a latent pipeline served (Stable Diffusion, DiT) it also generates from a prompt or
class, and restores with the latent solvers steered by the prompt; every result is decoded.

- :mod:`~nested_inverse.app.inputs`: uploads, examples and masks, checked;
- :mod:`~nested_inverse.app.job`: the page's settings → problem and samplers (as ``restore``);
- :mod:`~nested_inverse.app.session`: one tab's run as a stream of frames, and its commands;
- :mod:`~nested_inverse.app.record`: the downloads (images and the JSON record);
- :mod:`~nested_inverse.app.page`: the Gradio layout (needs the ``[app]`` extra).

Everything but ``page`` works without Gradio, so the handlers are tested without a browser.
"""

from .inputs import Source, named_images, read_image, read_mask, read_named
from .job import GENERATE, INPAINT_MASK, Job, Settings, prepare
from .session import Frame, Session, Sessions

__all__ = ["Frame", "GENERATE", "INPAINT_MASK", "Job", "Session", "Sessions",
           "Settings", "Source", "named_images", "prepare", "read_image", "read_mask", "read_named"]
