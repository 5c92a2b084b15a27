"""Package list for setuptools; everything else is in pyproject.toml.

The Triton kernels live in the top-level folder ``kernels/`` but import as ``workbench_kernels``: the
name ``kernels`` belongs to Hugging Face's distribution, which transformers (>= 5.25) depends on. The
dashboard lives in ``app/`` and installs as ``workbench_dashboard`` (``workbench app`` finds its
``main.py`` there), so a wheel carries it too.
"""

from setuptools import find_namespace_packages, setup

DASHBOARD = ["workbench_dashboard", "workbench_dashboard.views", "workbench_dashboard.workbench_app"]

setup(
    packages=find_namespace_packages(include=["workbench", "workbench.*"], exclude=["*.__pycache__"])
    + ["workbench_kernels"]
    + DASHBOARD,
    package_dir={"workbench_kernels": "kernels", "workbench_dashboard": "app"},
)
