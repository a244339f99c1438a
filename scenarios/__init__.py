"""tlbrace workloads (TOML scenario files and their loader), the runners, the command line and reports."""
