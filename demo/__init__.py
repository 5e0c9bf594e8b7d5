"""Demo checkpoints trained by the project's own scripts on data it ships or generates.

Run each script from the repository root as a module (`python -m demo.train_upscaler`);
`make demo-weights` re-trains all three. See demo/README.md.
"""
