"""Packaging for cellpose-tb (imported as ``cellpose``)."""
from setuptools import find_packages, setup

setup(
    name="cellpose-tb",
    version="0.1.0",
    description="Weight-compatible, instrumented re-implementation of Cellpose 3 inference for TB-scale images",
    packages=find_packages(include=["cellpose", "cellpose.*"]),
    package_data={"cellpose": ["models/*"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "torch>=2.1,<2.15",
        "numba>=0.58",
        "fastremap>=1.14",
        "tifffile>=2023.1",
        "imagecodecs>=2023.1",
        "opencv-python-headless>=4.7",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7", "line_profiler>=4", "zarr>=2.16", "dask[array]>=2023.1", "distributed>=2023.1"],
        "profile": ["line_profiler>=4"],
        "openvino": ["openvino>=2024.0"],
        "bench": ["asv>=0.6", "matplotlib>=3.7", "psutil>=5.9"],
    },
    entry_points={"console_scripts": ["cellpose-tb=cellpose.__main__:entry"]},
)
