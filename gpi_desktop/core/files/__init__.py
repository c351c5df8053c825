"""Files on disk: atomic writes, the prompts file, the run journal (runs/<hash>), the folder hold, old run folders."""
