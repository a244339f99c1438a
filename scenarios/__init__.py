"""tlbrace workloads: the scenario library (library/*.toml) and its loader."""
