"""evalkit's hand-built Qwen2.5-VL inputs equal those of transformers' own processor.

The NORA adapters assemble inputs from AutoTokenizer + the PIL image processor because
Qwen2_5_VLProcessor needs torchvision for its video half. Here the processor is built with a
stand-in video processor (images only) and both sides are compared on several image sizes,
batched with padding, down to the positions the model derives from them. A transformers
upgrade that changes either side (a new model input, another token layout) fails here.
"""

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from policies.nora.tiny_models import cached_tiny_models  # noqa: E402

SIZES = [(224, 224), (256, 256), (480, 640), (120, 160), (300, 200)]
KEYS = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")


@pytest.fixture(scope="module")
def nora():
    from policies.nora.nora import NoraPolicy

    return NoraPolicy(str(cached_tiny_models()["nora"]), device="cpu")


@pytest.fixture(scope="module")
def processor(nora):
    """transformers' Qwen2_5_VLProcessor over the checkpoint's tokenizer and image processor."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.video_processing_utils import BaseVideoProcessor

    class NoVideo(BaseVideoProcessor):
        """Stand-in for the torchvision-only video processor; the prompts hold no video."""

    class ImagesOnly(Qwen2_5_VLProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            # without torchvision transformers exports no video base class to check against
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    # loaded afresh, as transformers picks them for the checkpoint (not the adapter's objects)
    folder = cached_tiny_models()["nora"]
    return ImagesOnly(image_processor=AutoImageProcessor.from_pretrained(folder),
                      tokenizer=AutoTokenizer.from_pretrained(folder), video_processor=NoVideo(),
                      chat_template=json.loads((folder / "chat_template.json").read_text())["chat_template"])


def image(size, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def processor_inputs(processor, images, instructions) -> dict:
    """The reference's way: the processor's chat template on messages holding the image, then the processor."""
    from PIL import Image

    texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                          {"type": "text", "text": text}]}],
                                           tokenize=False, add_generation_prompt=True) for text in instructions]
    processor.tokenizer.padding_side = "left"
    return processor(text=texts, images=[Image.fromarray(im) for im in images], padding=True, return_tensors="pt")


def assert_same_inputs(ours: dict, theirs) -> None:
    model_inputs = {k for k in theirs.keys()}
    assert model_inputs == set(KEYS) == set(ours), (sorted(model_inputs), sorted(ours))
    for key in KEYS:
        assert ours[key].shape == theirs[key].shape, key
        assert torch.equal(ours[key].to(theirs[key].dtype), theirs[key]), key


def model_positions(model, batch: dict) -> torch.Tensor:
    """The 3-D positions the language model receives for this batch."""
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"]), with_kwargs=True)
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        hook.remove()
    return seen[0][-3:]


@pytest.mark.parametrize("size", SIZES)
def test_inputs_and_positions_equal_the_processors(nora, processor, size):
    images, texts = [image(size, seed=sum(size))], ["put the cream cheese in the bowl"]
    ours = nora.inputs(images, texts)
    theirs = processor_inputs(processor, images, texts)
    assert_same_inputs(ours, theirs)
    expected, _ = nora.model.model.get_rope_index(
        theirs["input_ids"], mm_token_type_ids=theirs["mm_token_type_ids"], image_grid_thw=theirs["image_grid_thw"],
        attention_mask=theirs["attention_mask"])
    positions = model_positions(nora.model, ours)
    assert torch.equal(positions, expected)
    assert not torch.equal(positions[1], positions[2])  # rows and columns differ: the image is 2-D


def test_a_padded_batch_of_mixed_sizes_equals_the_processors(nora, processor):
    images = [image((224, 224), 1), image((480, 640), 2), image((120, 160), 3)]
    texts = ["a", "open the top drawer of the cabinet and put the bowl inside", "turn on the stove"]
    ours = nora.inputs(images, texts)
    theirs = processor_inputs(processor, images, texts)
    assert_same_inputs(ours, theirs)
    assert (theirs["attention_mask"] == 0).any()  # padding was exercised
    expected, _ = nora.model.model.get_rope_index(
        theirs["input_ids"], mm_token_type_ids=theirs["mm_token_type_ids"], image_grid_thw=theirs["image_grid_thw"],
        attention_mask=theirs["attention_mask"])
    mask = theirs["attention_mask"].bool()
    assert torch.equal(model_positions(nora.model, ours)[:, mask], expected[:, mask])


def test_the_adapter_prompt_is_the_processors_chat_template(nora, processor):
    from policies.nora.nora import prompt_text

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
    assert prompt_text(nora.tokenizer, "x") == processor.apply_chat_template(messages, tokenize=False,
                                                                             add_generation_prompt=True)
