"""tfvid: video action recognition for TensorFlow 2 / Keras 3."""
from setuptools import find_packages, setup

JOBS = ["prepare_data", "extract_flow", "extract_features", "train", "evaluate", "fuse", "export",
        "predict", "export_four_stream", "convert_tflite", "dynamic_images", "benchmark", "quickstart",
        "data_service"]

setup(
    name="tfvid",
    version="0.1.0",
    description="Video action recognition for TensorFlow 2 / Keras 3: TSN, dynamic images, "
                "StNet, DenseImage networks and VideoMap, from a folder of videos to a served model.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tfvid", "tfvid.*", "pipelines", "pipelines.*"]),
    package_data={"pipelines": ["configs/*.flags"], "tfvid.data.kernels": ["*.cc"]},
    install_requires=[
        "tensorflow>=2.20",
        "keras>=3.10",
        "absl-py",
        "numpy",
        "av",                              # PyAV: video decoding at preparation time
        "opencv-contrib-python-headless",  # optical flow (TV-L1 lives in contrib)
        "scikit-learn",                    # digits sprites for the synthetic set; exact rank pooling
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "serving": ["tensorflow-serving-api"],
        "lite": ["ai-edge-litert"],
        # PyTorch side of `benchmark --bench=train-step` only; never needed by tfvid itself
        "bench": ["torch", "torchvision"],
        "test": ["pytest", "pytest-timeout", "tensorflow-serving-api", "ai-edge-litert"],
    },
    entry_points={"console_scripts": [f"tfvid-{j.replace('_', '-')}=pipelines.{j}:run" for j in JOBS]},
)
