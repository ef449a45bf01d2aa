"""mmadapt: extend pretrained masked language models to new languages by mini-model adaptation."""

__version__ = "0.1.0"
