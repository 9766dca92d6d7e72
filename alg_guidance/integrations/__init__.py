"""Integrations with diffusers pipelines and k-diffusion samplers, imported only when used."""
