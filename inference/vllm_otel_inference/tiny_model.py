"""A tiny random-weight Llama + byte-level BPE tokenizer, built in seconds, for tests.

vLLM's CPU attention backend needs head_dim 64 or 128 (ENV_NOTES.md), so the model has hidden size 128 and 2 heads.
The weights are random (seeded): outputs are gibberish but token counts, timings and the whole vLLM code path are
real. The directory is a normal Hugging Face model dir (config.json, model.safetensors, tokenizer.json, chat template)
that ``vllm serve`` / ``vllm.LLM`` load like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Bump when the builder's output changes, so cached test models are rebuilt.
TINY_MODEL_VERSION = "1"

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "vLLM serves large language models with paged attention and continuous batching.",
    "OpenTelemetry traces, metrics and logs describe what a service does.",
    "Time to first token and time per output token measure streaming latency.",
    "ClickHouse stores columns compressed and answers analytical queries quickly.",
    "Prefill processes the prompt; decode generates one token at a time.",
]


def build_tiny_llama(out_dir: str | Path, *, vocab_size: int = 512, seed: int = 0) -> Path:
    """Build (or reuse) the tiny Llama model directory at ``out_dir``.

    Shape: hidden 128, 2 layers, 2 attention heads (head_dim 64), intermediate 256, max 2048 positions,
    ``vocab_size`` BPE tokens. Reuses an existing build with the same ``TINY_MODEL_VERSION``.

    Returns the model directory. Raises ``OSError`` if ``out_dir`` cannot be written.
    """
    out = Path(out_dir)
    marker = out / ".vllm_otel_tiny_version"
    if marker.exists() and marker.read_text() == TINY_MODEL_VERSION:
        return out
    out.mkdir(parents=True, exist_ok=True)

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=fast.vocab_size if fast.vocab_size >= len(fast) else len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    gen = {"bos_token_id": fast.bos_token_id, "eos_token_id": fast.eos_token_id, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen))
    marker.write_text(TINY_MODEL_VERSION)
    return out
