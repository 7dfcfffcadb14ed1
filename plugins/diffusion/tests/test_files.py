"""The files a diffusers pipeline repository downloads (genzoo_diffusion.files): from the
listings of real Stable Diffusion 1.5 and SDXL repositories, exactly model_index.json and each
listed component's configs and one safetensors weight set — never the root single-file
checkpoints, pickle, Flax/ONNX/OpenVINO exports or unlisted folders; the fp16 variant only
when half precision is asked for; a component with only pickle weights refused in one line."""
from __future__ import annotations

import pytest

import genzoo_diffusion
from genzoo.errors import WeightsError
from genzoo_diffusion.files import component_variant, select_files

#: runwayml/stable-diffusion-v1-5 (main), as the Hub lists it.
SD15 = """.gitattributes README.md model_index.json
v1-5-pruned-emaonly.ckpt v1-5-pruned-emaonly.safetensors v1-5-pruned.ckpt
v1-5-pruned.safetensors
feature_extractor/preprocessor_config.json
safety_checker/config.json safety_checker/model.fp16.safetensors
safety_checker/model.safetensors safety_checker/pytorch_model.bin
safety_checker/pytorch_model.fp16.bin
scheduler/scheduler_config.json
text_encoder/config.json text_encoder/model.fp16.safetensors text_encoder/model.safetensors
text_encoder/pytorch_model.bin text_encoder/pytorch_model.fp16.bin
tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json
tokenizer/vocab.json
unet/config.json unet/diffusion_pytorch_model.bin unet/diffusion_pytorch_model.fp16.bin
unet/diffusion_pytorch_model.fp16.safetensors unet/diffusion_pytorch_model.non_ema.bin
unet/diffusion_pytorch_model.non_ema.safetensors unet/diffusion_pytorch_model.safetensors
vae/config.json vae/diffusion_pytorch_model.bin vae/diffusion_pytorch_model.fp16.bin
vae/diffusion_pytorch_model.fp16.safetensors vae/diffusion_pytorch_model.safetensors
onnx/unet/model.onnx""".split()
SD15_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"]}

#: stabilityai/stable-diffusion-xl-base-1.0 (main), as the Hub lists it.
SDXL = """.gitattributes 01.png LICENSE.md README.md comparison.png model_index.json
pipeline.png sd_xl_base_1.0.safetensors sd_xl_base_1.0_0.9vae.safetensors
sd_xl_offset_example-lora_1.0.safetensors
scheduler/scheduler_config.json
text_encoder/config.json text_encoder/flax_model.msgpack text_encoder/model.fp16.safetensors
text_encoder/model.onnx text_encoder/model.safetensors text_encoder/openvino_model.bin
text_encoder/openvino_model.xml
text_encoder_2/config.json text_encoder_2/flax_model.msgpack
text_encoder_2/model.fp16.safetensors text_encoder_2/model.onnx text_encoder_2/model.onnx_data
text_encoder_2/model.safetensors text_encoder_2/openvino_model.bin
text_encoder_2/openvino_model.xml
tokenizer/merges.txt tokenizer/special_tokens_map.json tokenizer/tokenizer_config.json
tokenizer/vocab.json
tokenizer_2/merges.txt tokenizer_2/special_tokens_map.json tokenizer_2/tokenizer_config.json
tokenizer_2/vocab.json
unet/config.json unet/diffusion_flax_model.msgpack unet/diffusion_pytorch_model.fp16.safetensors
unet/diffusion_pytorch_model.safetensors unet/model.onnx unet/model.onnx_data
unet/openvino_model.bin unet/openvino_model.xml
vae/config.json vae/diffusion_flax_model.msgpack vae/diffusion_pytorch_model.fp16.safetensors
vae/diffusion_pytorch_model.safetensors
vae_1_0/config.json vae_1_0/diffusion_pytorch_model.fp16.safetensors
vae_1_0/diffusion_pytorch_model.safetensors
vae_decoder/config.json vae_decoder/model.onnx vae_decoder/openvino_model.bin
vae_decoder/openvino_model.xml
vae_encoder/config.json vae_encoder/model.onnx vae_encoder/openvino_model.bin
vae_encoder/openvino_model.xml""".split()
SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True, "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}

TOKENIZER = ["tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
             "tokenizer/tokenizer_config.json", "tokenizer/vocab.json"]


def reader(index: dict, asked: list | None = None):
    """A read_json that serves model_index.json only (and notes what was read)."""
    def read_json(name):
        if asked is not None:
            asked.append(name)
        assert name == "model_index.json", name
        return index
    return read_json


def sd15(variant: str = "") -> list[str]:
    """The files an SD 1.5 pipeline needs, with ``variant`` ("" or ".fp16") weights: not its
    safety checker or feature extractor, which genzoo never reads."""
    return sorted(["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                   f"text_encoder/model{variant}.safetensors", *TOKENIZER, "unet/config.json",
                   f"unet/diffusion_pytorch_model{variant}.safetensors", "vae/config.json",
                   f"vae/diffusion_pytorch_model{variant}.safetensors"])


def test_sd15_takes_each_component_once_and_nothing_else():
    asked = []
    assert select_files(SD15, reader(SD15_INDEX, asked), None) == sd15()
    assert asked == ["model_index.json"]
    assert select_files(SD15, reader(SD15_INDEX), "fp32") == sd15()


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_takes_the_fp16_variants(dtype):
    assert select_files(SD15, reader(SD15_INDEX), dtype) == sd15(".fp16")


def test_sdxl_two_text_encoders_no_unlisted_folders_no_exports():
    tokenizers = TOKENIZER + [t.replace("tokenizer/", "tokenizer_2/") for t in TOKENIZER]
    expected = sorted(["model_index.json", "scheduler/scheduler_config.json",
                       "text_encoder/config.json", "text_encoder/model.safetensors",
                       "text_encoder_2/config.json", "text_encoder_2/model.safetensors",
                       *tokenizers, "unet/config.json",
                       "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                       "vae/diffusion_pytorch_model.safetensors"])
    assert select_files(SDXL, reader(SDXL_INDEX), None) == expected
    half = select_files(SDXL, reader(SDXL_INDEX), "fp16")
    assert half == sorted(f.replace("model.safetensors", "model.fp16.safetensors")
                          for f in expected)


def test_a_component_without_the_variant_keeps_its_full_weights():
    files = [f for f in SD15 if f != "vae/diffusion_pytorch_model.fp16.safetensors"]
    chosen = select_files(files, reader(SD15_INDEX), "fp16")
    assert "vae/diffusion_pytorch_model.safetensors" in chosen
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in chosen
    assert component_variant(chosen, "unet", "fp16") == "fp16"
    assert component_variant(chosen, "vae", "fp16") is None
    assert component_variant(SD15, "unet", None) is None


def test_bf16_prefers_a_bf16_variant():
    files = SDXL + ["unet/diffusion_pytorch_model.bf16.safetensors"]
    chosen = select_files(files, reader(SDXL_INDEX), "bf16")
    assert "unet/diffusion_pytorch_model.bf16.safetensors" in chosen
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in chosen
    assert not any(f.endswith("unet/diffusion_pytorch_model.fp16.safetensors") for f in chosen)


def test_sharded_weights_come_with_their_index_only():
    shards = ["unet/diffusion_pytorch_model-00001-of-00002.safetensors",
              "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
              "unet/diffusion_pytorch_model.safetensors.index.json",
              "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
              "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
              "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
              "unet/diffusion_pytorch_model.bin.index.json"]
    files = ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json", *shards]
    index = {"unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "X"]}
    assert select_files(files, reader(index), None) == sorted(
        ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", *shards[:3]])
    assert select_files(files, reader(index), "fp16") == sorted(
        ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", *shards[3:6]])


def test_a_component_with_only_pickle_weights_is_refused_in_one_line():
    files = [f for f in SD15 if not (f.startswith("vae/") and f.endswith(".safetensors"))]
    with pytest.raises(WeightsError) as e:
        select_files(files, reader(SD15_INDEX), None)
    msg = str(e.value)
    assert "\n" not in msg and "'vae'" in msg and "vae/diffusion_pytorch_model.bin" in msg
    assert "never loads pickle" in msg and "unet" not in msg


def test_only_variant_weights_say_which_dtype_takes_them():
    files = [f for f in SD15 if f != "unet/diffusion_pytorch_model.safetensors"
             and "non_ema" not in f]
    with pytest.raises(WeightsError, match="'unet', whose only safetensors weights are the fp16 "
                                           "variant.*--dtype fp16"):
        select_files(files, reader(SD15_INDEX), None)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in select_files(
        files, reader(SD15_INDEX), "fp16")


def test_a_listed_component_without_files_is_refused():
    files = [f for f in SD15 if not f.startswith("vae/")]
    with pytest.raises(WeightsError, match="component 'vae', which has no files"):
        select_files(files, reader(SD15_INDEX), None)
    # components genzoo never reads are neither fetched nor required
    files = [f for f in SD15 if not f.startswith("safety_checker/")]
    assert not any(f.startswith(("safety_checker/", "feature_extractor/"))
                   for f in select_files(files, reader(SD15_INDEX), None))


def test_other_layouts_are_not_claimed():
    assert select_files(["config.json", "model.safetensors"], reader({}), None) is None
    flat = ["model_index.json", "config.json", "diffusion_pytorch_model.safetensors",
            "scheduler_config.json"]  # google/ddpm-cifar10-32: components at the root
    index = {"unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}
    assert select_files(flat, reader(index), None) is None
    with pytest.raises(WeightsError, match="model_index.json is not a JSON object"):
        select_files(flat, reader([1, 2]), None)


def test_the_hook_is_the_plugins_answer():
    assert genzoo_diffusion.genzoo_select_files(
        filenames=SD15, read_json=reader(SD15_INDEX), dtype="fp16") == sd15(".fp16")
    assert genzoo_diffusion.genzoo_select_files(
        filenames=["config.json"], read_json=reader({}), dtype=None) is None
