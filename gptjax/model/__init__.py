"""Networks: layers, attention (masks, kernels, flash), the decoder, media encoders and projectors,
the multimodal wrapper, decoding with a KV cache, FLOP counts. Imports config and parallel only."""
