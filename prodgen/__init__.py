"""prodgen: deploy image models to NVIDIA Triton.

The shared core lives here: the model zoo (`prodgen.zoo`), the served tensor contract
(`prodgen.contract`), safe checkpoint loading and the user-facing error type. The
pipeline stages are sub-packages mapped from the top-level folders of the repository:
`prodgen.export` (export/), `prodgen.model_repository` (model_repository/),
`prodgen.serve` (serve/), `prodgen.client` (client/) and `prodgen.bench` (bench/).
"""

__version__ = "0.1.0"
