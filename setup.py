"""AdaFormer for BasicSR: a plugin package that registers AdaFormer with BasicSR and provides the `basicsr` command."""
from setuptools import find_packages, setup

setup(
    name='adaformer-basicsr',
    version='0.1.0',
    description='AdaFormer (AAAI 2024) super-resolution with adaptive token sparsification, as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['adaformer_arch', 'adaformer_arch.*']),
    python_requires='>=3.9',
    install_requires=[
        'basicsr==1.4.2',
        'torch>=2.1,<=2.14.1',
        'torchvision',
        'numpy',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'tensorboard',
    ],
    extras_require={'test': ['pytest', 'scikit-image']},
    entry_points={'console_scripts': ['basicsr = adaformer_arch.cli:main']},
    license='Apache-2.0',
)
