"""What a minute of video costs with VL-JEPA + selective decoding and with a token-generative VLM (`perception bench cost`)."""
