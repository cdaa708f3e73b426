"""asv benchmarks (benchmark_dir in asv.conf.json): they call the same runner functions as the CLI."""
