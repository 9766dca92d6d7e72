"""Build, merge, save and load a configuration."""

import alg_guidance as alg

config = alg.ALGConfig(filter={"kind": "downsample", "factor": 0.3}, schedule={"kind": "step", "end": 0.2})
assert config == alg.resolve_config("wan2.1").merge({"filter.factor": 0.3})  # the same, from the preset

config.save("alg.yaml")  # .yaml, .yml or .json
assert alg.ALGConfig.from_file("alg.yaml") == config
assert alg.resolve_config("alg.yaml") == config
