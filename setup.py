"""Package list for setuptools; everything else is in pyproject.toml.

The Triton kernels live in the top-level folder ``kernels/`` but import as ``workbench_kernels``: the
name ``kernels`` belongs to Hugging Face's distribution, which transformers (>= 5.25) depends on.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["workbench", "workbench.*"], exclude=["*.__pycache__"]) + ["workbench_kernels"],
    package_dir={"workbench_kernels": "kernels"},
)
