"""Package metadata for resnest_backbones.

ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") backbones for detectron2,
MMSegmentation and torchvision detection models.

detectron2 is not on PyPI, so it cannot be an install requirement: build it from its official source into
the same environment to use ``resnest_backbones.detectron2``. Everything else works without it.
"""
from setuptools import find_packages, setup

setup(
    name="resnest_backbones",
    version="0.1.0",
    description="ResNeSt split-attention backbones for detectron2, MMSegmentation and torchvision",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=[*find_packages(include=["resnest_backbones", "resnest_backbones.*"]), "resnest_backbones.configs"],
    # The configs ship inside the package (resnest_backbones/configs/ in a wheel): resnest_backbones.config_file(name)
    # finds them there, or in a checkout's configs/; their relative _base_/_BASE_ links keep working.
    package_dir={"resnest_backbones.configs": "configs"},
    package_data={"resnest_backbones.configs": ["**/*.py", "**/*.yaml"]},
    install_requires=["torch>=2.0", "torchvision>=0.15"],
    extras_require={
        # mmcv must be compiled with its ops against the installed torch: use tools/setup_env.sh.
        "mmseg": ["mmengine==0.10.7", "mmcv==2.1.0", "mmsegmentation==1.2.2", "ftfy", "regex"],
        # mmdet 3.3.0 accepts the pinned mmcv (>= 2.0.0rc4, < 2.2.0) and mmengine (>= 0.7.1, < 1.0.0).
        "mmdet": ["mmengine==0.10.7", "mmcv==2.1.0", "mmdet==3.3.0"],
        # pretrained="hf-hub:timm/<name>" (timm's files on the Hugging Face hub; safetensors, no pickle).
        "hub": ["huggingface_hub", "safetensors"],
        "test": [
            "pytest",
            "pytest-xdist",  # make test: the suite on every core (tests/conftest.py: one worker's threads)
            "ruff==0.17.6",  # make lint / CI (ruff.toml)
            "timm>=1.0,<2",
            "resnest==0.0.5",  # the official reference implementation (parity tests)
            "fvcore",
            "pycocotools",
            "onnx",
            "onnxruntime",
            "onnxscript",  # torch.onnx needs it in recent torch releases
            "huggingface_hub",  # the hf-hub weight sources, exercised offline through a local fake hub
            "safetensors",
        ],
        "tools": ["fvcore", "tqdm", "matplotlib"],
        # detectron2's own Python dependencies; detectron2 itself must be built from its source (see README).
        "detectron2": ["fvcore", "pycocotools", "iopath", "omegaconf", "hydra-core", "yacs",
                       "shapely"],  # the all-tricks configs crop polygon masks
    },
)
