"""The model zoo: the paper\x27s 3D CNNs in PyTorch and their export to ONNX."""
