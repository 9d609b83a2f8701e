"""The ``ranp-onnx`` command line: thin click commands over the library."""
