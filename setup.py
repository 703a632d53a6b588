import re
from pathlib import Path

from setuptools import setup

here = Path(__file__).resolve().parent
version = re.search(r'^__version__ = "([^"]+)"', (here / "dockerup.py").read_text(), re.M).group(1)

setup(
    name="dockerup",
    version=version,
    description="Make a Docker host run the containers its JSON spec files declare",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    py_modules=["dockerup"],
    # The oldest releases that work (dockerup.OLDEST_RELEASES); docopt-ng is docopt's successor.
    install_requires=["sh>=1.14.2", "jsonschema>=4.0", "requests>=2.25", "docopt-ng>=0.9"],
    entry_points={"console_scripts": ["dockerup = dockerup:main"]},
)
