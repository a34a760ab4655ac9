"""paddle_lk: large-kernel CNNs (RepLKNet, VAN, RefConv, UniRepLKNet) for PaddlePaddle."""
from setuptools import find_packages, setup

setup(
    name="paddle_lk",
    version="0.1.0",
    description="RepLKNet, VAN, RefConv and UniRepLKNet for PaddlePaddle: models, fast large-kernel depthwise conv, "
                "PyTorch checkpoint converters, training and PaddleClas/PaddleSeg/PaddleDetection integration",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["paddle_lk", "paddle_lk.*"]),
    package_data={"paddle_lk": ["csrc/*", "csrc/**/*", "ops/csrc/*"]},
    python_requires=">=3.8",
    # Paddle itself is not listed: CPU users install `paddlepaddle`, GPU users `paddlepaddle-gpu` 3.x
    # from Paddle's own index. requirements.txt pins the CPU set this repo is tested with.
    install_requires=["numpy", "pyyaml", "tqdm"],
    extras_require={
        "train": ["visualdl", "opencv-python", "mlxtend", "scikit-learn"],
        "export": ["paddle2onnx", "onnxruntime", "onnxoptimizer"],
        "toolkits": ["paddleclas", "paddleseg", "paddledet"],
        "analysis": ["matplotlib", "scikit-image"],
    },
    entry_points={"console_scripts": ["paddle_lk=paddle_lk.__main__:main"]},
    license="Apache-2.0",
    classifiers=["Programming Language :: Python :: 3"],
)
