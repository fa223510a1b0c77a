"""The pre-processing a backbone expects, from one place: the recipe's input spec over the backbone's config.

Lives with the models (like torchvision's weights carrying their transforms) so that training, the loaded run,
distillation teachers and export all build it the same way without importing the training loop.
"""

from __future__ import annotations

from edgetl.data.eval_resize import resize_of
from edgetl.data.transforms import ImagePreprocess, TextPreprocess
from edgetl.recipe import Recipe


def make_preprocess(recipe: Recipe, backbone) -> ImagePreprocess | TextPreprocess:
    """Pre-processing from one place: the recipe's input spec, defaulting to the backbone's pretrained config."""
    if recipe.input.kind == "image":
        cfg = backbone.cfg
        resize, crop_pct = resize_of(recipe)
        return ImagePreprocess(
            (recipe.input.image_size, recipe.input.image_size),
            channels=3,
            mean=list(recipe.input.mean or cfg.mean),
            std=list(recipe.input.std or cfg.std),
            resize=resize,
            crop_pct=crop_pct,
        )
    from edgetl.models.hf_text import load_tokenizer

    tok = load_tokenizer(recipe.input.tokenizer or backbone.cfg.tokenizer_path)
    return TextPreprocess(tok, recipe.input.max_length, backbone.input_names)
