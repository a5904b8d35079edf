"""The sampler maths, in NumPy: what a sampler chain does to one token's distribution
(``chain.sample_view``), the shared log-softmax (``softmax``) and perplexity (``perplexity``)."""

from webui.sampling.chain import Candidate, DryBreakers, SamplerView, sample_view
from webui.sampling.perplexity import perplexity, surprise_bits

__all__ = ["Candidate", "DryBreakers", "SamplerView", "perplexity", "sample_view", "surprise_bits"]
