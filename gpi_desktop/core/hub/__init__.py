"""The Hugging Face Hub and the token: downloads, the cache, plain Hub errors, the keyring."""
