"""The Hugging Face Hub and the token: which files a model needs, the cache, resumable downloads, plain Hub errors, the keyring.

Modules, top to bottom (each imports only those below it): `secrets` (the token),
`download`, `download_progress` and `plain_errors`, `cache`, `model_files`, `words`.
"""
