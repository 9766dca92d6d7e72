"""A tiny image-to-video model to show ALG on: procedural data, the model, its training and its experiment.

- [`data`][alg_guidance.demo.data]: procedural clips of textured shapes with their ground truth;
- [`model`][alg_guidance.demo.model]: `DemoVideoTransformer`, a small pixel-space video transformer (diffusers);
- [`sampling`][alg_guidance.demo.sampling]: sampling it with k-diffusion's Euler sampler through
  `alg.k_diffusion.guide`;
- [`measure`][alg_guidance.demo.measure]: object motion, dynamic degree, first-frame fidelity, label agreement;
- `python -m alg_guidance.demo.train` trains it, `python -m alg_guidance.demo.experiment` measures it.

Importing this package imports nothing beyond the standard library; the submodules need numpy, and `model`,
`sampling`, `train` and `experiment` need diffusers (the `diffusers` extra) and k-diffusion's sampler module.
"""
