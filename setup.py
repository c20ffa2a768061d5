"""isp_tf: neural camera ISPs (PyNET, MicroISP, InvISP, ParamISP, GenISP) in TensorFlow/Keras."""
from setuptools import find_packages, setup

# Versions proven together on Python 3.11 / x86-64 (see the README).
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-model-optimization==0.8.1",
    "ai-edge-litert==2.3.0",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "rawpy==0.28.0",
    "pidng==4.0.9",
    "tifffile==2026.3.3",
    "imageio==2.38.1",
    "exifread==3.5.1",
    "psutil==7.2.2",
    "scikit-image==0.26.0",
    "matplotlib==3.11.2",
    "pycocotools==2.0.11",
    "tqdm>=4.66",
    "pypng==0.20220715.0",
    "tensorboard==2.21.0",
]

setup(
    name="isp_tf",
    version="0.1.0",
    description="Neural camera ISPs in TensorFlow/Keras, exportable to TFLite for Android NNAPI 1.2",
    python_requires=">=3.11",
    packages=find_packages(include=["isp_tf", "isp_tf.*"]),  # benchmarks/ runs from the checkout (python -m benchmarks.run), never installed
    package_data={"isp_tf": ["models/*/recipe*.json", "models/*/weights/*.h5", "models/*/weights/*.json"]},
    install_requires=INSTALL_REQUIRES,
    # atheris: the bounded fuzz run of tests/reliability (libFuzzer wheels for Linux/macOS, CPython 3.8-3.12)
    extras_require={"test": ["pytest==9.2.0", "pytest-timeout==2.4.0", "atheris==3.0.0"]},
)
