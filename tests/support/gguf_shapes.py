"""GGUF files whose header says any model shape, with a few bytes of tensors.

The RAM check (downloads/fit.py) reads only a GGUF's header: a file written by PyPI's `gguf`
package (`GGUFWriter`) that says "80 layers, 8192 wide" but holds one tiny tensor tests the
check in milliseconds, where a real model of that shape would be 40 GB.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def gguf_with_shape(
    *,
    layers: int,
    embedding: int,
    heads: int,
    kv_heads: int,
    context: int = 32768,
    padding: int = 0,
    tokens: int = 1000,
) -> bytes:
    """A valid GGUF (llama architecture) with this shape in its header, a tokenizer list of
    `tokens` entries after it (as llama.cpp's converter writes them) and `padding` bytes of
    tensor data (to give quants of one model different sizes)."""
    import gguf
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shape.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        writer.add_name("shape")
        writer.add_context_length(context)
        writer.add_embedding_length(embedding)
        writer.add_block_count(layers)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list([f"t{i}" for i in range(tokens)])
        writer.add_tensor("pad", np.zeros(max(1, padding // 4), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()
