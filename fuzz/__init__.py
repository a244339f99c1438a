"""``tlbrace fuzz``, the model's own differential test: random scenarios drawn as specs, written as TOML, explored
with a bounded search, shrunk when they fail.
"""
