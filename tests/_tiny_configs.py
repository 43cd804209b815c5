"""Small config files shared by the end-to-end tests."""

# one ONNX fp32 artifact per tower: the cheapest target that still builds end to end
MINI_TARGET = """
version: 1
name: mini
platform: web
towers: [image, text]
backends:
  - backend: onnx
    quant: [fp32]
"""
