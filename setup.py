# Everything about the package is in pyproject.toml; this file lets tools that still
# call setup.py (`python3 setup.py sdist`, older pips) build it the same way.
from setuptools import setup

setup()
