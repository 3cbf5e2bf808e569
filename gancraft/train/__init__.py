"""Training: one StyleGAN2 loop (`loop`) and the methods that plug into it (`methods`)."""
