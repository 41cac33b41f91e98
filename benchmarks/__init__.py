"""storycheck benchmarks: ``python -m benchmarks [--quick] [--only SECTIONS]`` writes RESULTS.md."""
