"""The Triton model repository: config.pbtxt generation and atomic, versioned publishing."""
