"""Configs of real models' exact shapes, for estimates that need no weights."""

LLAMA_31_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "head_dim": 128,
    "attention_bias": False,
    "mlp_bias": False,
}
