"""Quick start: load a preset."""

import alg_guidance as alg

config = alg.resolve_config("wan2.1")  # a preset, a mapping, an ALGConfig or a YAML/JSON path
print(config.filter)  # kind='downsample' factor=0.4
print(config.schedule)  # kind='step' start=0.0 end=0.2
